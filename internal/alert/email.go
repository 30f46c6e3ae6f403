package alert

import (
	"context"
	"crypto/tls"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"github.com/moat-fw/moat/internal/config"
)

// email sends each alert as a mail through an SMTP relay.
type email struct {
	cfg      config.AlertEmail
	password string // from password_file; never logged
	host     string // this host, for HELO and Message-ID
	tls      *tls.Config
}

func newEmail(cfg config.AlertEmail, host string) (*email, error) {
	e := &email{cfg: cfg, host: host, tls: &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}}
	if e.host == "" {
		e.host = "localhost"
	}
	if cfg.PasswordFile != "" {
		pw, err := readSecret(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		e.password = pw
	}
	return e, nil
}

func (e *email) Send(ctx context.Context, a *Alert) error {
	addr := net.JoinHostPort(e.cfg.Host, strconv.Itoa(e.cfg.Port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	// One deadline for the whole exchange: a relay that stalls must not
	// hold the queue for ever.
	deadline := time.Now().Add(time.Minute)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, e.cfg.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Hello(e.host); err != nil {
		return fmt.Errorf("smtp %s: HELO: %w", addr, err)
	}
	if e.cfg.StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return &Permanent{fmt.Errorf("smtp %s: the relay offers no STARTTLS (starttls = true)", addr)}
		}
		if err := c.StartTLS(e.tls); err != nil {
			return fmt.Errorf("smtp %s: STARTTLS: %w", addr, err)
		}
	}
	if e.cfg.User != "" {
		// PlainAuth itself refuses to send the password in clear to
		// anything but localhost.
		if err := c.Auth(smtp.PlainAuth("", e.cfg.User, e.password, e.cfg.Host)); err != nil {
			return &Permanent{fmt.Errorf("smtp %s: AUTH as %s: %w", addr, e.cfg.User, err)}
		}
	}
	from, _ := mail.ParseAddress(e.cfg.From)
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", addr, err)
	}
	var to []string
	for _, t := range e.cfg.To {
		r, _ := mail.ParseAddress(t)
		if err := c.Rcpt(r.Address); err != nil {
			return &Permanent{fmt.Errorf("smtp %s: RCPT TO %s: %w", addr, r.Address, err)}
		}
		to = append(to, r.String())
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", addr, err)
	}
	if _, err := w.Write(e.message(a, from.String(), to)); err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: end of DATA: %w", addr, err)
	}
	_ = c.Quit() // delivered; a failed QUIT loses nothing
	return nil
}

// message is the mail: headers, then the alert's line and its fields.
func (e *email) message(a *Alert, from string, to []string) []byte {
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + clean(v) + "\r\n") }
	h("From", from)
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", a.Text))
	t := a.Time
	if t.IsZero() {
		t = time.Now()
	}
	h("Date", t.Format(time.RFC1123Z))
	h("Message-ID", fmt.Sprintf("<moat.%d.%d@%s>", t.UnixNano(), a.Seq, e.host))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "8bit")
	h("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	line := func(k, v string) {
		if v != "" && v != "0" {
			b.WriteString(fmt.Sprintf("%-12s %s\r\n", k+":", clean(v)))
		}
	}
	b.WriteString(clean(a.Text) + "\r\n\r\n")
	line("Event", string(a.Kind))
	line("Address", a.Addr)
	line("Name", a.Info.Name)
	line("Country", a.Info.Country)
	if a.Info.ASN != 0 {
		line("Network", fmt.Sprintf("AS%d %s", a.Info.ASN, a.Info.ASOrg))
	}
	line("Origin", a.Origin)
	line("Reason", a.Reason)
	if !a.Until.IsZero() {
		line("Until", a.Until.UTC().Format(time.DateTime+" UTC"))
	}
	line("Level", strconv.Itoa(a.Level))
	line("Scan types", a.Types)
	line("Probes", strconv.Itoa(a.Probes))
	line("Ports", strconv.Itoa(a.NPorts))
	line("Door", a.Door)
	line("Action", a.Action)
	line("Granted", strings.Join(a.Ports, " "))
	line("Fleet host", a.Host)
	line("Held back", strconv.FormatUint(a.Suppressed, 10))
	b.WriteString("\r\nmoat status " + clean(a.Addr) + " tells the whole story.\r\n")
	return []byte(b.String())
}
