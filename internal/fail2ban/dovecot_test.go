package fail2ban

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// defaultSettings is a host whose dovecot keeps its defaults.
var defaultSettings = StaticSettings{DovecotViews: DovecotDefaults()}

// with returns the defaults with one view's setting changed by set.
func with(protocol string, set func(*DovecotView)) StaticSettings {
	views := DovecotDefaults()
	for i := range views {
		if views[i].Protocol == protocol {
			set(&views[i])
		}
	}
	return StaticSettings{DovecotViews: views}
}

func TestDovecotLogSafe(t *testing.T) {
	for elements, safe := range map[string]bool{
		"user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<%{session}>":                                                    true,
		"user=<%{user}> method=%{mechanism} rip=%{remote_ip} lip=%{local_ip} mpid=%{mail_pid} %{secured} session=<%{session}>": true,
		"  user=<%u>   rip=%r ":                           true,
		"method=%m user=<%u> rip=%r":                      true,
		"user=<%u>":                                       false, // the name ends the line (the forged line)
		"rip=%r user=<%u>":                                false, // rip before the name
		"user=<%u> %c session=<%{session}>":               false, // what follows can be empty, or has no rip
		"user=%u rip=%r":                                  false, // no ">" of dovecot's after the name
		"user=<%u> orig=<%{orig_user}> rip=%r":            false, // more client text
		"user=<%u> method=%m rip=%r lip=%l %{login_user}": false,
		"": false,
	} {
		if err := dovecotLogSafe(elements); (err == nil) != safe {
			t.Errorf("%q: %v, want safe=%v", elements, err, safe)
		} else if err != nil && !strings.Contains(err.Error(), "login_log_format_elements") {
			t.Errorf("%q: the error does not name the setting: %v", elements, err)
		}
	}
}

func TestDovecotNamesSafe(t *testing.T) {
	def := DovecotDefaults()[0]
	if err := dovecotNamesSafe(def); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for name, set := range map[string]func(*DovecotView){
		"auth_username_chars":       func(v *DovecotView) { v.AuthUsernameChars = "" },
		"auth_username_chars ":      func(v *DovecotView) { v.AuthUsernameChars += " " },
		"auth_username_chars\t":     func(v *DovecotView) { v.AuthUsernameChars += "\t" },
		"auth_username_chars é":     func(v *DovecotView) { v.AuthUsernameChars += "é" },
		"auth_username_translation": func(v *DovecotView) { v.AuthUsernameTranslation = "# " },
		"auth_username_format":      func(v *DovecotView) { v.AuthUsernameFormat = "%Lu x" },
	} {
		v := def
		set(&v)
		err := dovecotNamesSafe(v)
		if err == nil || !strings.Contains(err.Error(), strings.TrimSpace(strings.Fields(name)[0])) {
			t.Errorf("%s: %v, want a refusal naming the setting", name, err)
		}
	}
	// Commas are fine: the name's \S* is greedy, so the address taken is
	// the last before "): ", the auth process's.
	v := def
	v.AuthUsernameChars += ",()<>"
	if err := dovecotNamesSafe(v); err != nil {
		t.Errorf("commas and parentheses: %v", err)
	}
}

// The gated failregexes are imported with dovecot's defaults, refused
// with the setting that makes them forgeable (in any one protocol) or
// when dovecot's settings cannot be read, with a reason that names the
// setting; the others do not depend on them.
func TestConvertDovecotGate(t *testing.T) {
	f, err := LoadFilter(f2bDir, "dovecot", map[string]string{"mode": "aggressive"}, "auto", nil)
	if err != nil {
		t.Skipf("fail2ban's dovecot filter: %v", err)
	}
	const (
		logGated   = "login_log_format_elements"
		namesGated = "auth_username_chars"
	)
	gate := map[int]string{1: logGated, 3: namesGated, 4: logGated}
	for _, tc := range []struct {
		name    string
		s       ServiceSettings
		refused map[int]string // index -> text the reason holds
	}{
		{"defaults", defaultSettings, nil},
		{"nil", nil, map[int]string{1: "not read", 3: "not read", 4: "not read"}},
		{"no doveconf", StaticSettings{DovecotErr: exec.ErrNotFound}, map[int]string{1: "not found", 3: "not found", 4: "not found"}},
		{"no views", StaticSettings{DovecotViews: []DovecotView{}}, map[int]string{1: "returned nothing", 3: "returned nothing", 4: "returned nothing"}},
		{"name last", with("imap", func(v *DovecotView) { v.LoginLogFormatElements = "user=<%u>" }), map[int]string{1: "protocol imap", 4: "protocol imap"}},
		{"any name", with("", func(v *DovecotView) { v.AuthUsernameChars = "" }), map[int]string{3: "auth_username_chars"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ConvertFilter(f, tc.s)
			if len(c.Patterns) != 5 {
				t.Fatalf("%d failregexes, want 5 (aggressive mode)", len(c.Patterns))
			}
			for i, p := range c.Patterns {
				want, refused := tc.refused[i]
				switch {
				case refused && p.Err == nil:
					t.Errorf("failregex %d imported, want refused (%s)", i, want)
				case refused && (!strings.Contains(p.Err.Error(), want) || !strings.Contains(p.Err.Error(), gate[i])):
					t.Errorf("failregex %d: %v: want %q and %q in it", i, p.Err, want, gate[i])
				case !refused && (p.Err != nil || len(p.Moat) == 0):
					t.Errorf("failregex %d refused: %v", i, p.Err)
				}
			}
			switch {
			case tc.refused == nil && !strings.Contains(c.Relies, "failregexes 2 (login_log_format_elements), 4 (auth_username_chars, auth_username_translation and auth_username_format), 5 (login_log_format_elements)"):
				t.Errorf("no note on what the import relies on: %q", c.Relies)
			}
			for i := range tc.refused {
				if strings.Contains(c.Relies, fmt.Sprintf(" %d (", i+1)) {
					t.Errorf("the note names failregex %d, which was refused: %q", i, c.Relies)
				}
			}
		})
	}
}

func TestParseDoveconf(t *testing.T) {
	v, err := parseDoveconf([]byte("login_log_format_elements = user=<%u> rip=%r\nauth_username_chars = abc\nauth_username_translation = \nauth_username_format = %Lu\n"))
	if err != nil || v.LoginLogFormatElements != "user=<%u> rip=%r" || v.AuthUsernameChars != "abc" || v.AuthUsernameTranslation != "" || v.AuthUsernameFormat != "%Lu" {
		t.Fatalf("got %+v, %v", v, err)
	}
	// doveconf prints an empty value as "key = " (trailing space), which
	// editors and pipes may strip.
	if _, err := parseDoveconf([]byte("login_log_format_elements = x\nauth_username_chars =\nauth_username_translation =\nauth_username_format = %u\n")); err != nil {
		t.Errorf("empty values without the trailing space: %v", err)
	}
	if _, err := parseDoveconf([]byte("login_log_format_elements = x\n")); err == nil || !strings.Contains(err.Error(), "auth_username_chars") {
		t.Errorf("a missing key: %v", err)
	}
}

// Doveconf asks the real doveconf, each protocol block included: a
// format changed only for pop3 refuses failregex 1 and says where.
func TestDoveconfReal(t *testing.T) {
	if _, err := exec.LookPath("doveconf"); err != nil {
		t.Skip("doveconf is not installed (apt-get install dovecot-imapd, as scripts/setup.sh does)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "dovecot.conf")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte("ssl = no\nprotocols = imap pop3\n"+s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	views, err := (&Doveconf{Config: conf}).Dovecot()
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != len(dovecotProtocols) {
		t.Fatalf("%d views, want %d", len(views), len(dovecotProtocols))
	}
	for i, v := range views {
		if d := DovecotDefaults()[i]; v != d {
			t.Errorf("doveconf without settings: %+v, want dovecot's defaults %+v", v, d)
		}
	}
	write("protocol pop3 {\n  login_log_format_elements = user=<%u>\n}\n")
	d := &Doveconf{Config: conf}
	if need, err := dovecotGate(d, dovecotReason); err == nil || !strings.Contains(err.Error(), "protocol pop3") || need != "login_log_format_elements" {
		t.Errorf("pop3's format: %q, %v", need, err)
	}
	if _, err := dovecotGate(d, dovecotPassdb); err != nil {
		t.Errorf("names: %v", err)
	}
	if _, err := (&Doveconf{Config: filepath.Join(dir, "missing.conf")}).Dovecot(); err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Errorf("a missing file: %v", err)
	}
}
