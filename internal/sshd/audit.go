package sshd

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Severity ranks a finding.
type Severity int

// Severities, lowest first. Info is not a weakness: it explains a choice.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < 0 || int(s) >= len(severityNames) {
		return "severity-" + strconv.Itoa(int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads "info", "low", "medium", "high" or "critical".
func ParseSeverity(s string) (Severity, error) {
	if i := slices.Index(severityNames[:], strings.ToLower(s)); i >= 0 {
		return Severity(i), nil
	}
	return 0, fmt.Errorf("severity %q: want low, medium, high or critical", s)
}

// MarshalText writes the severity's name, for JSON.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// applyWhen says when harden writes a finding's fix.
type applyWhen int

const (
	never   applyWhen = iota // advice: the fix needs what only the admin knows
	always                   // harden writes it (its lockout guards still apply)
	withAll                  // depends on how the host is used: harden writes it with --all
)

// Finding is one problem with sshd's configuration, and its fix.
type Finding struct {
	ID       string   `json:"id"`
	Key      string   `json:"key"`   // the sshd_config keyword ("HostKey" for key files)
	Value    string   `json:"value"` // what it is now
	Severity Severity `json:"severity"`
	Message  string   `json:"message"` // why it matters
	Fix      string   `json:"fix"`     // the sshd_config line to write, or the command to run

	set    string // the value harden writes for Key; "" when Fix is no config line
	apply  applyWhen
	hold   string // why harden leaves it alone unless --all (or always, for never)
	keyFix *KeyFix
}

// KeyFix makes a private host key file readable by root alone.
type KeyFix struct {
	Path  string
	Chmod bool // to 0600
	Chown bool // to root:root
}

func (k KeyFix) String() string {
	var cmds []string
	if k.Chown {
		cmds = append(cmds, "chown root:root "+k.Path)
	}
	if k.Chmod {
		cmds = append(cmds, "chmod 600 "+k.Path)
	}
	return strings.Join(cmds, " && ")
}

// Audit judges sshd's effective configuration. It does no I/O: Facts hold
// what it needs from the host. Findings come most severe first.
func Audit(e *Effective, f Facts) []Finding {
	a := &auditor{e: e, f: f}
	a.rootLogin()
	a.passwords()
	a.limits()
	a.forwarding()
	a.allowList()
	a.algorithms()
	a.hostKeys()
	a.misc()
	a.port()
	a.rawConfig()
	slices.SortStableFunc(a.out, func(x, y Finding) int { return cmp.Compare(y.Severity, x.Severity) })
	return a.out
}

type auditor struct {
	e   *Effective
	f   Facts
	out []Finding
}

// config records a finding whose fix is one sshd_config line, Key To.
func (a *auditor) config(id, key string, sev Severity, to string, apply applyWhen, msg string) *Finding {
	a.out = append(a.out, Finding{ID: id, Key: key, Value: a.e.Get(key), Severity: sev, Message: msg,
		Fix: key + " " + to, set: to, apply: apply})
	return &a.out[len(a.out)-1]
}

// keyHolders names the accounts with a usable key, for messages.
func (a *auditor) keyHolders() []string {
	var names []string
	for _, n := range []string{a.f.Invoker, "root"} {
		if n != "" && a.f.HasKey(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func (a *auditor) rootLogin() {
	switch v := a.e.Get("permitrootlogin"); v {
	case "yes":
		a.config("permit-root-login", "PermitRootLogin", High, "no", always,
			"root may log in with a password: root exists on every host, so it is the first account guessed. Log in as yourself and use sudo.")
	case "prohibit-password", "without-password":
		a.config("permit-root-login", "PermitRootLogin", Medium, "no", always,
			"root may log in with a key. Logging in as yourself and using sudo puts a name on every root session and makes a stolen root key useless.")
	case "forced-commands-only":
		f := a.config("permit-root-login", "PermitRootLogin", Low, "no", withAll,
			"root may log in with keys that run a forced command (backups often do): keep it only if that is used.")
		f.hold = "a backup or other job may log in as root with a forced command"
	}
	if a.e.Bool("permitemptypasswords") {
		a.config("permit-empty-passwords", "PermitEmptyPasswords", Critical, "no", always,
			"an account with an empty password logs in with no password at all.")
	}
}

func (a *auditor) passwords() {
	holders := a.keyHolders()
	sev, keys := Low, "No authorized key was found for "+orNames(a.f.Invoker, "root")+": add one (ssh-copy-id) and log in with it before turning passwords off."
	if len(holders) > 0 {
		sev, keys = Medium, strings.Join(holders, " and ")+" can log in with a key, so passwords are not needed."
	}
	if a.e.Bool("passwordauthentication") {
		a.config("password-authentication", "PasswordAuthentication", sev, "no", always,
			"passwords can be guessed, phished and reused; moat bans guessers, but a key cannot be guessed. "+keys)
	}
	kbd := "KbdInteractiveAuthentication"
	if !a.e.Has(kbd) && a.e.Has("challengeresponseauthentication") {
		kbd = "ChallengeResponseAuthentication" // before OpenSSH 8.7
	}
	if a.e.Bool(kbd) {
		pam := ""
		if a.e.Bool("usepam") {
			pam = " With UsePAM yes it asks for the password through PAM, so passwords work even with PasswordAuthentication no."
		}
		a.config("kbd-interactive-authentication", kbd, sev, "no", always,
			"keyboard-interactive authentication is on."+pam+" Keep it only for one-time codes (AuthenticationMethods publickey,keyboard-interactive). "+keys)
	}
	if a.e.Get("pubkeyauthentication") == "no" {
		a.config("pubkey-authentication", "PubkeyAuthentication", Medium, "yes", always,
			"keys are refused, so passwords are the only way in.")
	}
}

func (a *auditor) limits() {
	if n, err := strconv.Atoi(a.e.Get("maxauthtries")); err == nil && n > 4 {
		f := a.config("max-auth-tries", "MaxAuthTries", Low, "4", withAll,
			fmt.Sprintf("each connection may try %d passwords or keys; 4 or fewer slows guessing (moat bans repeat guessers too). A client whose agent offers more keys than that before the right one is refused: set IdentitiesOnly and IdentityFile in its ssh_config.", n))
		f.hold = "a client whose agent offers more keys than that before the right one would be refused"
	}
	if n, err := strconv.Atoi(a.e.Get("logingracetime")); err == nil {
		switch {
		case n == 0:
			f := a.config("login-grace-time", "LoginGraceTime", Medium, "30", withAll,
				"unauthenticated connections never time out: idle ones fill MaxStartups and shut everyone out. 0 is the stop-gap for CVE-2024-6387 on an unpatched OpenSSH 8.5-9.7; patched packages (Debian 12's 1:9.2p1-2+deb12u3 and later) do not need it.")
			f.hold = "0 may be the CVE-2024-6387 stop-gap: make sure OpenSSH is patched first"
		case n > 60:
			a.config("login-grace-time", "LoginGraceTime", Low, "30", always,
				fmt.Sprintf("an unauthenticated connection may hold one of the MaxStartups slots for %ds; 30s is plenty to log in.", n))
		}
	}
	if v := a.e.Get("maxstartups"); v != "" {
		start, rate, full, ok := parseMaxStartups(v)
		switch {
		case !ok:
		case start > 10 || full > 100:
			a.config("max-startups", "MaxStartups", Low, "10:30:100", always,
				fmt.Sprintf("up to %d unauthenticated connections at once (OpenSSH's default starts dropping at 10 and refuses all at 100): more slots let one source run more guesses in parallel.", full))
		case rate >= 100 || start >= full:
			a.config("max-startups", "MaxStartups", Low, "10:30:100", always,
				fmt.Sprintf("no random early drop: past %d unauthenticated connections every new one is refused, so a flood shuts everyone out; start:rate:full (10:30:100) refuses a growing share instead, leaving you a chance. PerSourceMaxStartups (OpenSSH 8.5+) caps one address.", start))
		}
	}
}

// parseMaxStartups reads "start:rate:full" or "full"; sshd -T prints the
// three-field form.
func parseMaxStartups(v string) (start, rate, full int, ok bool) {
	parts := strings.Split(v, ":")
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return 0, 0, 0, false
		}
		nums[i] = n
	}
	switch len(nums) {
	case 1:
		return nums[0], 100, nums[0], true
	case 3:
		return nums[0], nums[1], nums[2], true
	}
	return 0, 0, 0, false
}

func (a *auditor) forwarding() {
	// The guide's advice: keep only what is used ("Set to 'no' if SSH will
	// not be used to tunnel VNC").
	if a.e.Get("permittunnel") != "" && a.e.Get("permittunnel") != "no" {
		a.config("permit-tunnel", "PermitTunnel", Low, "no", always,
			"tun/tap tunnels (ssh -w) make SSH a VPN into this host's networks; keep it only if used.")
	}
	if v := a.e.Get("gatewayports"); v != "" && v != "no" {
		a.config("gateway-ports", "GatewayPorts", Medium, "no", always,
			"ports forwarded with ssh -R listen on every address, open to the network rather than to this host alone.")
	}
	if v := a.e.Get("permituserenvironment"); v != "" && v != "no" {
		a.config("permit-user-environment", "PermitUserEnvironment", Medium, "no", always,
			"users set environment variables (LD_PRELOAD, ...) from ~/.ssh/environment before their session starts, which can get around ForceCommand and restricted shells.")
	}
	if a.e.Bool("disableforwarding") {
		return // it turns off X11, agent, TCP and streamlocal forwarding at once
	}
	if a.e.Bool("x11forwarding") {
		a.config("x11-forwarding", "X11Forwarding", Low, "no", always,
			"X11 forwarding lets programs on this host reach the X display of whoever connects; keep it only if graphical programs are run over SSH.")
	}
	if v := a.e.Get("allowtcpforwarding"); v != "" && v != "no" {
		f := a.config("allow-tcp-forwarding", "AllowTcpForwarding", Low, "no", withAll,
			"TCP forwarding lets any user tunnel into networks this host reaches (the guide: no, unless SSH tunnels VNC). VS Code Remote-SSH, jump hosts and database tunnels need it.")
		f.hold = "VS Code Remote-SSH, jump hosts and tunnels need it"
	}
	if a.e.Bool("allowagentforwarding") {
		f := a.config("allow-agent-forwarding", "AllowAgentForwarding", Low, "no", withAll,
			"root on this host can use a forwarded agent to log in wherever its keys open; ProxyJump needs no agent forwarding.")
		f.hold = "some use a forwarded agent, e.g. for git on this host"
	}
	if v := a.e.Get("allowstreamlocalforwarding"); v != "" && v != "no" {
		f := a.config("allow-streamlocal-forwarding", "AllowStreamLocalForwarding", Low, "no", withAll,
			"unix-socket forwarding reaches local sockets such as docker's; keep it only if used.")
		f.hold = "some forward unix sockets (gpg agent, docker)"
	}
}

func (a *auditor) allowList() {
	if a.e.Has("allowusers") || a.e.Has("allowgroups") {
		return
	}
	fix := "AllowGroups ssh-users"
	if a.f.Invoker != "" && a.f.Invoker != "root" {
		fix = "AllowUsers " + a.f.Invoker
	}
	a.out = append(a.out, Finding{ID: "allow-users", Key: "AllowUsers", Severity: Low, Fix: fix,
		Message: "every account with a password or key may log in, service accounts given a shell by mistake too: name who may, with every account that logs in over SSH.",
		hold:    "moat cannot know every account that needs SSH; a short list locks the others out"})
}

// algDirectives are the algorithm lists judged; keys only flags what is
// broken in lists that name the kinds of key users hold, since removing a
// NIST curve there would lock out their ECDSA and FIDO keys.
var algDirectives = []struct {
	key, name string
	kind      algKind
	highOnly  bool
	when      string // a yes/no keyword that must be yes for the list to matter
}{
	{"kexalgorithms", "KexAlgorithms", kexAlg, false, ""},
	{"ciphers", "Ciphers", cipherAlg, false, ""},
	{"macs", "MACs", macAlg, false, ""},
	{"hostkeyalgorithms", "HostKeyAlgorithms", keyAlg, false, ""},
	{"pubkeyacceptedalgorithms", "PubkeyAcceptedAlgorithms", keyAlg, true, ""},
	{"casignaturealgorithms", "CASignatureAlgorithms", keyAlg, true, ""},
	{"hostbasedacceptedalgorithms", "HostbasedAcceptedAlgorithms", keyAlg, true, "hostbasedauthentication"},
	{"gssapikexalgorithms", "GSSAPIKexAlgorithms", kexAlg, false, "gssapikeyexchange"},
}

func (a *auditor) algorithms() {
	for _, d := range algDirectives {
		if d.when != "" && !a.e.Bool(d.when) {
			continue
		}
		list := a.e.List(d.key)
		var broken, weak algGroups
		for _, alg := range list {
			v, ok := judgeAlg(d.kind, alg)
			switch {
			case !ok:
			case v.sev >= High:
				broken.add(alg, v.why)
			case !d.highOnly:
				weak.add(alg, v.why)
			}
		}
		id := strings.ToLower(d.name)
		if len(broken.algs) > 0 {
			to := strings.Join(without(d.kind, list, High), ",")
			f := a.algFinding(id+"-broken", d.name, High, broken.algs, to, always, "offers broken algorithms: "+broken.String()+".")
			a.guardHostKeyAlgs(f, d.key, to)
		}
		if len(weak.algs) > 0 {
			to := strings.Join(without(d.kind, list, Low), ",")
			f := a.algFinding(id+"-weak", d.name, Low, weak.algs, to, withAll, "offers weak algorithms: "+weak.String()+". Removing them can cut off old clients.")
			f.hold = "removing them can cut off old clients"
			a.guardHostKeyAlgs(f, d.key, to)
		}
	}
}

// algGroups collects algorithms under their reasons, in order, so that a
// message names each reason once.
type algGroups struct {
	algs    []string
	reasons []string
	byWhy   map[string][]string
}

func (g *algGroups) add(alg, why string) {
	if g.byWhy == nil {
		g.byWhy = map[string][]string{}
	}
	if _, seen := g.byWhy[why]; !seen {
		g.reasons = append(g.reasons, why)
	}
	g.byWhy[why] = append(g.byWhy[why], alg)
	g.algs = append(g.algs, alg)
}

func (g *algGroups) String() string {
	parts := make([]string, len(g.reasons))
	for i, why := range g.reasons {
		parts[i] = strings.Join(g.byWhy[why], ", ") + ": " + why
	}
	return strings.Join(parts, "; ")
}

func (a *auditor) algFinding(id, key string, sev Severity, algs []string, to string, apply applyWhen, msg string) *Finding {
	a.out = append(a.out, Finding{ID: id, Key: key, Value: strings.Join(algs, ","), Severity: sev, Message: msg,
		Fix: key + " " + to, set: to, apply: apply})
	return &a.out[len(a.out)-1]
}

// guardHostKeyAlgs stops harden from writing a HostKeyAlgorithms that no
// host key can serve: sshd -t accepts it, and then every client fails.
func (a *auditor) guardHostKeyAlgs(f *Finding, key, to string) {
	if key != "hostkeyalgorithms" {
		return
	}
	known, served := false, false
	for _, hk := range a.f.HostKeys {
		if hk.Err != nil || hk.Key.Type == "" {
			continue
		}
		known = true
		for _, alg := range hostKeyAlgs(hk.Key.Type) {
			if slices.Contains(strings.Split(to, ","), alg) {
				served = true
			}
		}
	}
	if known && !served {
		f.apply = never
		f.hold = "no host key could serve what would remain; add an ed25519 host key first (ssh-keygen -t ed25519)"
		f.Message += " No host key could serve what would remain: add an ed25519 host key first."
	}
}

func (a *auditor) hostKeys() {
	for _, hk := range a.f.HostKeys {
		if hk.Err != nil {
			continue
		}
		fix := KeyFix{Path: hk.Path, Chmod: hk.Mode&0o077 != 0, Chown: hk.UID != 0}
		if fix.Chmod || fix.Chown {
			var why []string
			if fix.Chmod {
				why = append(why, fmt.Sprintf("mode %#o lets group or others read it, and sshd refuses to load such a key", hk.Mode))
			}
			if fix.Chown {
				why = append(why, fmt.Sprintf("it belongs to uid %d, not root, and that account can read it", hk.UID))
			}
			a.out = append(a.out, Finding{ID: "host-key-permissions", Key: "HostKey", Value: fmt.Sprintf("%s (mode %#o, uid %d)", hk.Path, hk.Mode, hk.UID),
				Severity: High, Fix: fix.String(), apply: always, keyFix: &fix,
				Message: "the server's private key must be readable by root alone: " + strings.Join(why, "; ") + "; whoever reads it can impersonate this server."})
		}
		newKey := "ssh-keygen -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key (if missing), then remove HostKey " + hk.Path + "; clients will see a new host key"
		switch k := hk.Key; {
		case k.Type == "ssh-dss":
			a.out = append(a.out, Finding{ID: "host-key-strength", Key: "HostKey", Value: hk.Path + " (ssh-dss)", Severity: High, Fix: newKey,
				Message: "a DSA host key: 1024 bits, disabled by default since OpenSSH 7.0 and removed in 10.0.", hold: "replacing a host key changes what clients have recorded"})
		case k.Type == "ssh-rsa" && k.Bits > 0 && k.Bits < 2048:
			a.out = append(a.out, Finding{ID: "host-key-strength", Key: "HostKey", Value: fmt.Sprintf("%s (RSA %d bits)", hk.Path, k.Bits), Severity: High, Fix: newKey,
				Message: fmt.Sprintf("an RSA host key of %d bits is breakable; OpenSSH refuses RSA keys under 1024 bits and ssh-audit fails them under 2048.", k.Bits), hold: "replacing a host key changes what clients have recorded"})
		case k.Type == "ssh-rsa" && k.Bits > 0 && k.Bits < 3072:
			a.out = append(a.out, Finding{ID: "host-key-strength", Key: "HostKey", Value: fmt.Sprintf("%s (RSA %d bits)", hk.Path, k.Bits), Severity: Low, Fix: newKey,
				Message: fmt.Sprintf("an RSA host key of %d bits gives 112-bit strength (ssh-audit: warn); ssh-keygen makes 3072 bits by default.", k.Bits), hold: "replacing a host key changes what clients have recorded"})
		}
	}
}

func (a *auditor) misc() {
	switch v := strings.ToUpper(a.e.Get("loglevel")); v {
	case "QUIET", "FATAL", "ERROR":
		a.config("log-level", "LogLevel", Medium, "VERBOSE", always,
			"at "+v+" sshd does not log failed logins, so moat's login guard (and fail2ban) see nothing. VERBOSE also logs which key logged in.")
	case "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3":
		a.config("log-level", "LogLevel", Low, "VERBOSE", always,
			"debug logging records details of users' sessions (sshd_config(5): it violates their privacy).")
	}
	if a.e.Get("strictmodes") == "no" {
		a.config("strict-modes", "StrictModes", Medium, "yes", always,
			"sshd accepts authorized_keys files and home directories that other users can write, so keys they planted.")
	}
	if a.e.Bool("hostbasedauthentication") {
		f := a.config("hostbased-authentication", "HostbasedAuthentication", Medium, "no", withAll,
			"hostbased authentication trusts other hosts to vouch for their users: one compromised host opens this one.")
		f.hold = "clusters sometimes rely on it"
	}
	if a.e.Get("ignorerhosts") == "no" {
		f := a.config("ignore-rhosts", "IgnoreRhosts", Medium, "yes", withAll,
			"users' ~/.rhosts and ~/.shosts files may grant logins from other hosts.")
		f.hold = "hostbased setups may rely on ~/.shosts"
	}
}

func (a *auditor) port() {
	ports := ParseListenPorts(serialize(a.e))
	if len(ports) == 0 {
		return
	}
	value := joinPorts(ports)
	const egress = " Port 443 helps only to reach this host from networks whose egress filters let nothing but web traffic out (a web server then needs another port; tcp/53 is the guide's fallback)."
	msg := "sshd listens on the standard port 22. Moving it is obscurity, not security: a scan finds sshd on any port within minutes; moat's firewall, bans and guards are the protection." + egress
	if !slices.Equal(ports, []uint16{22}) {
		msg = "sshd listens on " + value + ". A non-standard port is obscurity, not security: it quiets blind bots' log noise, but a scan finds sshd on any port within minutes; moat's firewall, bans and guards are the protection." + egress
	}
	a.out = append(a.out, Finding{ID: "port", Key: "Port", Value: value, Severity: Info, Message: msg})
}

func (a *auditor) rawConfig() {
	if a.f.Config == nil {
		return
	}
	for _, d := range a.f.Config.Find("protocol") {
		a.out = append(a.out, Finding{ID: "protocol", Key: "Protocol", Value: strings.Join(d.Args, " "), Severity: Info,
			Fix:     fmt.Sprintf("delete line %d of %s", d.Line, d.File),
			Message: fmt.Sprintf("%s line %d: Protocol is obsolete: OpenSSH 7.4 removed SSH protocol 1 and ignores the keyword (the guide's \"Protocol 2\" is from older releases).", d.File, d.Line)})
	}
	if a.f.Connection != "" {
		return
	}
	var where []string
	for _, d := range a.f.Config.Find("match") {
		where = append(where, fmt.Sprintf("%s:%d (Match %s)", d.File, d.Line, strings.Join(d.Args, " ")))
	}
	if len(where) > 0 {
		a.out = append(a.out, Finding{ID: "match-blocks", Key: "Match", Value: strings.Join(where, ", "), Severity: Info,
			Fix:     "moat sshd audit -C user=NAME,host=HOST,addr=ADDR",
			Message: "Match blocks override these global values for the connections they match, and this audit shows the global values only: audit a connection with -C to see what applies to it."})
	}
}

// serialize writes settings back as sshd -T lines, for the parsers that
// read that format.
func serialize(e *Effective) []byte {
	var b strings.Builder
	for _, s := range e.settings {
		b.WriteString(s.Key + " " + s.Value + "\n")
	}
	return []byte(b.String())
}

func joinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func orNames(names ...string) string {
	var out []string
	for _, n := range names {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return strings.Join(out, " or ")
}

// Summary counts findings per severity.
type Summary struct {
	Critical int    `json:"critical"`
	High     int    `json:"high"`
	Medium   int    `json:"medium"`
	Low      int    `json:"low"`
	Info     int    `json:"info"`
	Total    int    `json:"total"`
	FailOn   string `json:"fail_on"`
	Failed   bool   `json:"failed"` // a finding at or above FailOn
}

// Summarize counts findings and says whether any is at or above failOn.
func Summarize(fs []Finding, failOn Severity) Summary {
	s := Summary{Total: len(fs), FailOn: failOn.String()}
	for _, f := range fs {
		switch f.Severity {
		case Critical:
			s.Critical++
		case High:
			s.High++
		case Medium:
			s.Medium++
		case Low:
			s.Low++
		default:
			s.Info++
		}
		if f.Severity >= failOn {
			s.Failed = true
		}
	}
	return s
}
