package alert

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/moat-fw/moat/internal/config"
	"github.com/moat-fw/moat/internal/events"
)

// syslogSender writes one line per alert to the local syslog socket.
type syslogSender struct {
	cfg      config.AlertSyslog
	facility int
	host     string

	mu     sync.Mutex
	conn   net.Conn
	stream bool // conn is a stream socket: lines need a frame
}

func newSyslog(cfg config.AlertSyslog, host string) *syslogSender {
	if host == "" {
		host = "-"
	}
	return &syslogSender{cfg: cfg, facility: max(config.SyslogFacility(cfg.Facility), 0), host: host}
}

// Severities: warning for bans and scans, notice for the rest.
const (
	sevWarning = 4
	sevNotice  = 5
)

// Line formats a as the configured RFC would.
func (s *syslogSender) Line(a *Alert) string {
	sev := sevNotice
	if a.Kind == events.Ban || a.Kind == events.Scan {
		sev = sevWarning
	}
	pri := s.facility*8 + sev
	t := a.Time
	if t.IsZero() {
		t = time.Now()
	}
	if s.cfg.Format == "rfc3164" {
		// <PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG
		return fmt.Sprintf("<%d>%s %s %s[%d]: %s", pri, t.Format(time.Stamp), s.host, s.cfg.Tag, os.Getpid(), a.Text)
	}
	// <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG
	sd := fmt.Sprintf(`[moat@32473 kind="%s" addr="%s"`, sdEscape(string(a.Kind)), sdEscape(a.Addr))
	if a.Level > 0 {
		sd += ` level="` + strconv.Itoa(a.Level) + `"`
	}
	if a.Origin != "" {
		sd += ` origin="` + sdEscape(a.Origin) + `"`
	}
	sd += "]"
	return fmt.Sprintf("<%d>1 %s %s %s %d %s %s %s", pri, t.UTC().Format(time.RFC3339Nano), s.host, s.cfg.Tag, os.Getpid(), a.Kind, sd, a.Text)
}

// sdEscape escapes a structured-data value (RFC 5424 6.3.3).
func sdEscape(v string) string {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', ']':
			out = append(out, '\\', c)
		default:
			if c >= ' ' && c != 0x7f {
				out = append(out, c)
			}
		}
	}
	return string(out)
}

func (s *syslogSender) Send(ctx context.Context, a *Alert) error {
	line := s.Line(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	for try := 0; try < 2; try++ {
		if s.conn == nil {
			c, stream, err := dialSyslog(ctx, s.cfg.Socket)
			if err != nil {
				return err
			}
			s.conn, s.stream = c, stream
		}
		msg := line
		if s.stream {
			msg += "\n" // a stream socket needs a frame
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.conn.Write([]byte(msg)); err == nil {
			return nil
		}
		// The syslog daemon restarted: dial again once.
		s.conn.Close()
		s.conn = nil
	}
	return fmt.Errorf("syslog %s: write failed twice", s.cfg.Socket)
}

// dialSyslog connects to the socket as a datagram socket (/dev/log of
// journald and rsyslog), or a stream one.
func dialSyslog(ctx context.Context, path string) (c net.Conn, stream bool, err error) {
	var d net.Dialer
	if c, err = d.DialContext(ctx, "unixgram", path); err == nil {
		return c, false, nil
	}
	if c, err2 := d.DialContext(ctx, "unix", path); err2 == nil {
		return c, true, nil
	}
	return nil, false, fmt.Errorf("syslog socket %s: %w", path, err)
}
