package fail2ban

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// ServiceSettings answers, at import, what the safety of a narrowed
// failregex depends on in a service's own settings on this host. Three of
// fail2ban's dovecot failregexes cannot be forged with dovecot's default
// settings and can with others (testdata/forged/dovecot.log); the import
// asks before it takes them, and refuses them when it cannot tell. The
// daemon never asks: the imported rule names what it relies on, and
// `moat import fail2ban` has to be run again after those settings change.
type ServiceSettings interface {
	// Dovecot returns dovecot's settings as doveconf resolves them, once
	// outside any protocol block and once for each login protocol.
	Dovecot() ([]DovecotView, error)
}

// DovecotView is what doveconf says for one protocol filter.
type DovecotView struct {
	Protocol string // "" outside every protocol block
	// LoginLogFormatElements decides failregexes 1 and 4 (a login
	// process's "Disconnected (auth failed, ...): user=<NAME>, ...").
	LoginLogFormatElements string
	// The auth process's user name settings decide failregex 3
	// ("passdb(NAME,ADDR): unknown user").
	AuthUsernameChars, AuthUsernameTranslation, AuthUsernameFormat string
}

// DovecotDefaults are dovecot 2.3's defaults (doveconf -d), the same for
// every protocol.
func DovecotDefaults() []DovecotView {
	var out []DovecotView
	for _, p := range dovecotProtocols {
		out = append(out, DovecotView{Protocol: p,
			LoginLogFormatElements: "user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<%{session}>",
			AuthUsernameChars:      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@",
			AuthUsernameFormat:     "%Lu"})
	}
	return out
}

// dovecotProtocols are the protocol filters asked about: none, and those
// with a login process fail2ban's filter reads (its prefregex names
// pop3-, imap-, managesieve- and submission-login; managesieve's protocol
// is "sieve").
var dovecotProtocols = []string{"", "imap", "pop3", "submission", "sieve"}

// StaticSettings are settings known beforehand (tests; a host whose
// dovecot runs elsewhere).
type StaticSettings struct {
	DovecotViews []DovecotView
	DovecotErr   error
}

// Dovecot returns s's views, or its error (none known when both are nil).
func (s StaticSettings) Dovecot() ([]DovecotView, error) {
	if s.DovecotErr == nil && s.DovecotViews == nil {
		return nil, errors.New("dovecot's settings were not given")
	}
	return s.DovecotViews, s.DovecotErr
}

// Doveconf reads dovecot's settings with dovecot's own doveconf, which
// resolves includes, !include_try and protocol blocks as dovecot does;
// moat does not parse dovecot.conf itself.
type Doveconf struct {
	Config string // doveconf -c; "" for dovecot's default file

	once  sync.Once
	views []DovecotView
	err   error
}

var dovecotKeys = []string{"login_log_format_elements", "auth_username_chars", "auth_username_translation", "auth_username_format"}

// Dovecot runs doveconf once for each protocol filter (once per import).
func (d *Doveconf) Dovecot() ([]DovecotView, error) {
	d.once.Do(func() { d.views, d.err = d.read() })
	return d.views, d.err
}

func (d *Doveconf) read() ([]DovecotView, error) {
	bin, err := exec.LookPath("doveconf")
	if err != nil {
		return nil, fmt.Errorf("doveconf is not installed here (run the import on the host dovecot runs on): %w", err)
	}
	var out []DovecotView
	for _, p := range dovecotProtocols {
		args := []string{}
		if d.Config != "" {
			args = append(args, "-c", d.Config)
		}
		if p != "" {
			args = append(args, "-f", "protocol="+p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, append(args, dovecotKeys...)...)
		cmd.Stderr = &stderr
		text, err := cmd.Output()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("doveconf %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		v, err := parseDoveconf(text)
		if err != nil {
			return nil, fmt.Errorf("doveconf %s: %w", strings.Join(args, " "), err)
		}
		v.Protocol = p
		out = append(out, v)
	}
	return out, nil
}

// parseDoveconf reads doveconf's "key = value" lines for dovecotKeys.
func parseDoveconf(text []byte) (DovecotView, error) {
	var v DovecotView
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			k, ok = strings.CutSuffix(sc.Text(), " =")
		}
		if ok && v.set(k, val) {
			seen[k] = true
		}
	}
	for _, k := range dovecotKeys {
		if !seen[k] {
			return DovecotView{}, fmt.Errorf("no %s in its output (a dovecot without this setting?)", k)
		}
	}
	return v, nil
}

// set sets the setting named key (one of dovecotKeys) to value; false
// for another key.
func (v *DovecotView) set(key, value string) bool {
	switch key {
	case "login_log_format_elements":
		v.LoginLogFormatElements = value
	case "auth_username_chars":
		v.AuthUsernameChars = value
	case "auth_username_translation":
		v.AuthUsernameTranslation = value
	case "auth_username_format":
		v.AuthUsernameFormat = value
	default:
		return false
	}
	return true
}

// dovecotLogElements are the login_log_format_elements whose text is
// dovecot's own (src/login-common/client-common.c, login_var_expand_table:
// the mechanism, addresses and ports, the mail process's PID, TLS state,
// the session id), in 2.2/2.3's and 2.4's spellings. The user element is
// the one element with the client's text; every other variable (%d, %n,
// orig_user, auth_user...) holds the client's text too and is refused by
// not being listed.
var dovecotLogElements = []string{
	"method=%m", "rip=%r", "lip=%l", "mpid=%e", "%c", "%k", "session=<%{session}>",
	"rport=%{rport}", "lport=%{lport}", "rport=%{remote_port}", "lport=%{local_port}",
	"method=%{mechanism}", "rip=%{remote_ip}", "lip=%{local_ip}", "mpid=%{mail_pid}", "%{secured}", "%{ssl_security}",
}

// dovecotLogSafe says whether a login_log_format_elements keeps fail2ban's
// failregexes 1 and 4, narrowed (dovecotUserNarrow), from taking an
// address the client wrote. The client writes the user name; dovecot
// writes the ">" after it, then ", " and the next element. After the
// address the failregex takes only [^>]* and a final ", session=<\S+>",
// so a fake address in the name is taken only if that ">" ends the line:
// if no element follows the name, or every one that follows can be empty
// (dovecot leaves out elements whose variables are empty). So: the user
// element is exactly user=<%u> (user=%u, without the ">", has no such
// stop), every other element is dovecot's own text, and rip= (never
// empty) comes after the name.
func dovecotLogSafe(elements string) error {
	const why = "login_log_format_elements = %q: %s, and a client could then put a fake rip= in its user name (testdata/forged/dovecot.log)"
	f := strings.Fields(elements)
	user := slices.IndexFunc(f, func(e string) bool { return e == "user=<%u>" || e == "user=<%{user}>" })
	if user < 0 {
		return fmt.Errorf(why, elements, "no user=<%u> element")
	}
	for i, e := range f {
		if i != user && !slices.Contains(dovecotLogElements, e) {
			return fmt.Errorf(why, elements, fmt.Sprintf("element %q is not one of the elements dovecot writes itself", e))
		}
	}
	if !slices.ContainsFunc(f[user+1:], func(e string) bool { return e == "rip=%r" || e == "rip=%{remote_ip}" }) {
		return fmt.Errorf(why, elements, "no rip= after the user name")
	}
	return nil
}

// dovecotNamesSafe says whether the auth process's user names keep
// fail2ban's failregex 3, "passdb(\S*,<HOST>(?:,\S*)?): unknown
// user|...", from taking an address the client wrote. Its \S* takes the
// name, and greedily: with the name spaceless, the address it takes is
// the last one before "): ", the auth process's own. A fake needs the
// "): unknown user" after it, a space inside the name. The auth process
// refuses a name holding a character outside auth_username_chars before
// any passdb runs (auth-request.c, auth_request_fix_username), then
// translates and formats it; none of the three may bring a space in.
func dovecotNamesSafe(v DovecotView) error {
	const why = "%s = %q: %s, and a client could then log in with a user name holding \"): unknown user\" (testdata/forged/dovecot.log)"
	switch {
	case v.AuthUsernameChars == "":
		return fmt.Errorf(why, "auth_username_chars", "", "every character is allowed in user names")
	case strings.ContainsFunc(v.AuthUsernameChars, isDovecotSpace):
		return fmt.Errorf(why, "auth_username_chars", v.AuthUsernameChars, "it allows white space in user names")
	case strings.ContainsFunc(v.AuthUsernameTranslation, isDovecotSpace):
		return fmt.Errorf(why, "auth_username_translation", v.AuthUsernameTranslation, "it may turn a character into white space")
	case strings.ContainsFunc(v.AuthUsernameFormat, isDovecotSpace):
		return fmt.Errorf(why, "auth_username_format", v.AuthUsernameFormat, "it writes white space into user names")
	}
	return nil
}

// isDovecotSpace is any character \s or \S could disagree on, and any
// non-ASCII: doveconf prints the settings as written, and the check
// would rather refuse than reason about encodings.
func isDovecotSpace(r rune) bool {
	return r <= ' ' || r >= 0x7f
}

// dovecotGate decides, for dovecot's failregex fr, whether its narrowing
// may be used on this host: nil if fr needs no settings, else the first
// reason against it (or doveconf's error).
func dovecotGate(s ServiceSettings, fr string) (need string, err error) {
	var check func(DovecotView) error
	switch {
	case strings.Contains(fr, dovecotReason):
		need, check = "login_log_format_elements", func(v DovecotView) error { return dovecotLogSafe(v.LoginLogFormatElements) }
	case strings.Contains(fr, dovecotPassdb):
		need, check = "auth_username_chars, auth_username_translation and auth_username_format", dovecotNamesSafe
	default:
		return "", nil
	}
	if s == nil {
		return need, errors.New("dovecot's settings were not read")
	}
	views, err := s.Dovecot()
	if err != nil {
		return need, err
	}
	if len(views) == 0 {
		return need, errors.New("doveconf returned nothing")
	}
	for _, v := range views {
		if err := check(v); err != nil {
			if v.Protocol != "" {
				return need, fmt.Errorf("protocol %s: %w", v.Protocol, err)
			}
			return need, err
		}
	}
	return need, nil
}
