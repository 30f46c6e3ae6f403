package fwknop

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moat-fw/moat/internal/knock"
)

// AccessStanza is one access.conf stanza: a SOURCE line and the
// KEY value lines after it, in order, with their line numbers.
type AccessStanza struct {
	Line int // the SOURCE line
	Vars []Var
}

// Var is one "KEY value" line.
type Var struct {
	Line       int
	Key, Value string
}

// Get is the last value of key (fwknopd keeps the last), and whether it is set.
func (s AccessStanza) Get(key string) (string, bool) {
	for i := len(s.Vars) - 1; i >= 0; i-- {
		if s.Vars[i].Key == key {
			return s.Vars[i].Value, true
		}
	}
	return "", false
}

// maxConfBytes bounds what the parsers read: access.conf files are small.
const maxConfBytes = 1 << 20

// ParseVars reads fwknop's config syntax (access.conf, fwknopd.conf):
// "KEY value" lines, # comments, blank lines. fwknopd splits a line at the
// first run of blanks and trims the value; so does this.
func ParseVars(r io.Reader) ([]Var, error) {
	var out []Var
	sc := bufio.NewScanner(io.LimitReader(r, maxConfBytes))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		if i := strings.IndexAny(k, "\t"); i >= 0 {
			k, v = k[:i], k[i+1:]+" "+v
		}
		out = append(out, Var{Line: n, Key: strings.ToUpper(k), Value: strings.TrimSpace(v)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fwknop config line %d: %w", n+1, err)
	}
	return out, nil
}

// ParseAccess splits access.conf into stanzas: each SOURCE starts one
// (fwknopd's rule). Lines before the first SOURCE come back as orphans.
func ParseAccess(r io.Reader) (stanzas []AccessStanza, orphans []Var, err error) {
	vars, err := ParseVars(r)
	if err != nil {
		return nil, nil, err
	}
	for _, v := range vars {
		switch {
		case v.Key == "SOURCE":
			stanzas = append(stanzas, AccessStanza{Line: v.Line, Vars: []Var{v}})
		case len(stanzas) == 0:
			orphans = append(orphans, v)
		default:
			s := &stanzas[len(stanzas)-1]
			s.Vars = append(s.Vars, v)
		}
	}
	return stanzas, orphans, nil
}

var pcapPort = regexp.MustCompile(`(?i)\budp\s+(?:dst\s+)?port\s+(\d{1,5})\b`)

// ServerPort is the UDP port fwknopd.conf listens on: UDPSERV_PORT in
// UDP server mode, else the port in PCAP_FILTER; 0 if neither says.
func ServerPort(vars []Var) (port int, note string) {
	get := func(k string) (string, bool) {
		for i := len(vars) - 1; i >= 0; i-- {
			if vars[i].Key == k {
				return vars[i].Value, true
			}
		}
		return "", false
	}
	if v, ok := get("UDPSERV_PORT"); ok {
		if p, err := strconv.Atoi(v); err == nil && p > 0 && p < 65536 {
			return p, "from UDPSERV_PORT"
		}
	}
	if v, ok := get("PCAP_FILTER"); ok {
		if m := pcapPort.FindStringSubmatch(v); m != nil {
			if p, _ := strconv.Atoi(m[1]); p > 0 && p < 65536 {
				return p, "from PCAP_FILTER"
			}
		}
	}
	return 0, ""
}

// dropped are access.conf keys moat has no use for, with the reason.
var dropped = map[string]string{
	"DESTINATION":          "moat opens ports on this host only; the destination is this host",
	"RESTRICT_PORTS":       "moat opens only open_ports",
	"ENABLE_CMD_EXEC":      "moat never runs commands from packets",
	"ENABLE_CMD_SUDO_EXEC": "moat never runs commands from packets",
	"CMD_EXEC_USER":        "moat never runs commands from packets",
	"CMD_EXEC_GROUP":       "moat never runs commands from packets",
	"CMD_SUDO_EXEC_USER":   "moat never runs commands from packets",
	"CMD_SUDO_EXEC_GROUP":  "moat never runs commands from packets",
	"CMD_CYCLE_OPEN":       "moat opens through its own grant sets, not commands",
	"CMD_CYCLE_CLOSE":      "moat opens through its own grant sets, not commands",
	"CMD_CYCLE_TIMER":      "moat opens through its own grant sets, not commands",
	"ACCESS_EXPIRE":        "moat has no expiry date for an entry; remove it when it should end",
	"ACCESS_EXPIRE_EPOCH":  "moat has no expiry date for an entry; remove it when it should end",
	"FORCE_NAT":            "moat does not forward (NAT messages are refused)",
	"FORCE_SNAT":           "moat does not forward (NAT messages are refused)",
	"FORCE_MASQUERADE":     "moat does not forward (NAT messages are refused)",
	"DISABLE_DNAT":         "moat does not forward (NAT messages are refused)",
	"KEY_FILE":             "give key_file/hmac_key_file with the base64 key alone in each file",
}

// Import writes [[spa.fwknop]] tables for the stanzas (and [spa] ports
// when port is not 0). A stanza that cannot be taken is written as
// comments, with why; every key that does not convert is a warning, in
// the output as a "# warning:" comment and in the returned list.
func Import(stanzas []AccessStanza, port int, portNote string) (out string, warnings []string) {
	var b strings.Builder
	q := knock.QuoteTOML
	warn := func(w string) {
		warnings = append(warnings, w)
		fmt.Fprintf(&b, "# warning: %s\n", oneLine(w))
	}
	b.WriteString("[spa]\n")
	if port > 0 {
		fmt.Fprintf(&b, "# %s in fwknopd.conf\nports = [\"udp/%d\"]\n", oneLine(portNote), port)
	}
	for i, s := range stanzas {
		name := fmt.Sprintf("fwknop-%d", i+1)
		b.WriteString("\n")
		at := func(v Var) string { return fmt.Sprintf("access.conf line %d (stanza %s)", v.Line, name) }
		var lines []string
		refuse := ""
		add := func(k, v string) { // a key given twice: the last wins, as in fwknopd
			lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, k+" = ") })
			lines = append(lines, k+" = "+v)
		}
		add("name", q(name))
		get := func(k string) string { v, _ := s.Get(k); return v }
		// Keys: base64 as is, passphrases as their bytes in base64 (the
		// KDF takes the raw bytes either way).
		encKey, hmacKey := "", ""
		if v, ok := s.Get("KEY_BASE64"); ok {
			encKey = v
		} else if v, ok := s.Get("KEY"); ok {
			encKey = base64.StdEncoding.EncodeToString([]byte(v))
		}
		if v, ok := s.Get("HMAC_KEY_BASE64"); ok {
			hmacKey = v
		} else if v, ok := s.Get("HMAC_KEY"); ok {
			hmacKey = base64.StdEncoding.EncodeToString([]byte(v))
		}
		switch {
		case encKey == "" && (get("GPG_REMOTE_ID") != "" || get("GPG_DECRYPT_ID") != "" || get("GPG_FINGERPRINT_ID") != ""):
			refuse = "a GPG stanza: moat takes fwknop's Rijndael + HMAC mode only"
		case encKey == "":
			refuse = "no KEY_BASE64 or KEY"
		case hmacKey == "":
			refuse = "no HMAC_KEY_BASE64: moat takes fwknop packets only with HMAC (fwknop --use-hmac), since without it a forged packet is decrypted and parsed unauthenticated; add an HMAC key to the stanza and the clients"
		}
		if v, ok := s.Get("HMAC_DIGEST_TYPE"); ok && !strings.EqualFold(v, "sha256") {
			refuse = "HMAC_DIGEST_TYPE " + v + ": moat takes HMAC-SHA256 (fwknop's default) only"
		}
		if v, ok := s.Get("ENCRYPTION_MODE"); ok && !strings.EqualFold(v, "cbc") {
			refuse = "ENCRYPTION_MODE " + v + ": moat takes CBC (fwknop's default) only"
		}
		for _, v := range s.Vars {
			switch v.Key {
			case "SOURCE":
				var srcs []string
				for _, f := range strings.Split(v.Value, ",") {
					f = strings.TrimSpace(f)
					if strings.EqualFold(f, "ANY") {
						srcs = []string{q("any")}
						break
					}
					if p, err := netip.ParsePrefix(f); err == nil {
						srcs = append(srcs, q(p.Masked().String()))
					} else if a, err := netip.ParseAddr(f); err == nil {
						srcs = append(srcs, q(a.String()))
					} else {
						warn(fmt.Sprintf("%s: SOURCE %q: not an address or network (moat takes 10.0.0.0/8, not 10.0.0.0/255.0.0.0); left out", at(v), f))
					}
				}
				if len(srcs) == 0 {
					refuse = "SOURCE has no address moat can read: the entry would take any source"
				}
				add("source", "["+strings.Join(srcs, ", ")+"]")
			case "OPEN_PORTS":
				var ps []string
				for _, f := range strings.Split(v.Value, ",") {
					if p, ok := ParsePort(f); ok {
						ps = append(ps, q(p.String()))
					} else {
						warn(fmt.Sprintf("%s: OPEN_PORTS %q: not proto/port; left out", at(v), strings.TrimSpace(f)))
					}
				}
				add("open_ports", "["+strings.Join(ps, ", ")+"]")
			case "KEY_BASE64", "KEY", "HMAC_KEY_BASE64", "HMAC_KEY", "HMAC_DIGEST_TYPE", "ENCRYPTION_MODE":
			case "FW_ACCESS_TIMEOUT":
				if n, err := strconv.Atoi(v.Value); err == nil && n >= 1 && n <= 86400 {
					add("max_duration", q(strconv.Itoa(n)+"s"))
				} else {
					warn(fmt.Sprintf("%s: FW_ACCESS_TIMEOUT %q: want 1 to 86400 seconds; moat's default 30s applies", at(v), v.Value))
				}
			case "REQUIRE_SOURCE_ADDRESS":
				add("require_source_address", strconv.FormatBool(isYes(v.Value)))
				if isYes(v.Value) {
					warn(fmt.Sprintf("%s: REQUIRE_SOURCE_ADDRESS: moat's require_source_address is stricter than fwknopd's: the packet's -a address must be its source, not only different from 0.0.0.0", at(v)))
				}
			case "REQUIRE_USERNAME":
				add("require_username", q(v.Value))
			default:
				if strings.HasPrefix(v.Key, "GPG_") {
					if encKey != "" {
						warn(fmt.Sprintf("%s: %s: GPG is not supported; only the stanza's Rijndael key is used", at(v), v.Key))
					}
					continue
				}
				if why, ok := dropped[v.Key]; ok {
					warn(fmt.Sprintf("%s: %s not converted: %s", at(v), v.Key, why))
				} else {
					warn(fmt.Sprintf("%s: %s: unknown to moat; not converted", at(v), clipKey(v.Key)))
				}
			}
		}
		if _, ok := s.Get("OPEN_PORTS"); !ok && refuse == "" {
			warn(fmt.Sprintf("stanza %s (access.conf line %d) has no OPEN_PORTS: fwknopd opens any port asked for, moat only listed ones; fill in open_ports", name, s.Line))
			add("open_ports", "[]")
		}
		if refuse != "" {
			warn(fmt.Sprintf("stanza %s (access.conf line %d) not converted: %s", name, s.Line, refuse))
			b.WriteString("# [[spa.fwknop]]\n")
			for _, l := range lines {
				fmt.Fprintf(&b, "# %s\n", oneLine(l))
			}
			continue
		}
		add("key_base64", q(encKey))
		add("hmac_key_base64", q(hmacKey))
		b.WriteString("[[spa.fwknop]]\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String(), warnings
}

func isYes(s string) bool { return strings.EqualFold(s, "y") || strings.EqualFold(s, "yes") }

func clipKey(k string) string {
	if len(k) > 40 {
		k = k[:40] + "..."
	}
	return strconv.Quote(k)
}

// oneLine keeps a comment on its line whatever the input held.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}
