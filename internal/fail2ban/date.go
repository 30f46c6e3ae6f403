package fail2ban

import (
	"fmt"
	"regexp"
	"strings"
)

// Go versions of fail2ban's default date templates (datedetector.py
// DEFAULT_TEMPLATES), loosened where fail2ban uses a backreference. They
// only have to find where the date ends: the address is never in it.
var defaultDates = []string{
	// ISO 8601 and simple dates: 2005-01-23T21:59:59.981746+01:00, 2005/01/23 21:59:59
	`\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:T|  ?)\d{1,2}:\d{1,2}:\d{1,2}(?:[.,]\d+)?(?:\s*` + zoneRE + `)?`,
	// asctime / syslog: (Sun )?Jan 23 21:59:59(.011)?( 2005)?, and
	// fail2ban's two later templates, the same after a zone name or
	// offset ("CEST Aug  6 10:14:52": monit's "[CEST Aug  6 10:14:52]")
	`(?:` + zoneRE + ` )?(?:[A-Za-z]{3} )?[A-Za-z]{3} [ 0-3]?\d  ?\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?(?: \d{4})?`,
	// Sun Jan 23 2005 21:59:59.011
	`(?:[A-Za-z]{3} )?[A-Za-z]{3} [ 0-3]?\d \d{4}  ?\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?`,
	// 23/01/2005 21:59:59, 17-07-2008 17:23:25
	`[0-3]?\d[-/][01]?\d[-/](?:\d{4}|\d{2})  ?\d{1,2}:\d{1,2}:\d{1,2}`,
	// [31/Oct/2006:09:22:55 -0000], 26-Jul-2007 15:20:52.252
	`[0-3]?\d[-/][A-Za-z]{3}[-/]\d{4}[ :]?\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?(?: ` + zoneRE + `)?`,
	// 05/20/2008:01:57:39
	`[01]?\d/[0-3]?\d/\d{4}:\d{1,2}:\d{1,2}:\d{1,2}`,
	// 01-27-2012 16:22:44.252
	`[01]?\d-[0-3]?\d-\d{4}  ?\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?`,
	// Epoch
	epochRE,
	// time only
	`\d{1,2}:\d{1,2}:\d{1,2}`,
	// <09/16/08@05:03:30>
	`<\d{2}/\d{2}/\d{2}@\d{2}:\d{2}:\d{2}>`,
	// MySQL: 130322 11:46:11
	`\d{6}  ?\d{1,2}:\d{2}:\d{2}`,
	// Apache Tomcat: Jan 23, 2005 9:59:59 PM
	`[A-Za-z]{3} [0-3]?\d, \d{4} [ 01]?\d:\d{2}:\d{2} [AaPp][Mm]`,
}

const (
	zoneRE  = `(?:Z|UTC|GMT|[A-Z]{3,5}|[+-][01]\d(?::?\d{2})?)`
	epochRE = `\d{10,11}(?:\.\d{3,6})?`
	tai64RE = `@[0-9a-f]{24}`
)

var defaultDate = `(?:` + strings.Join(defaultDates, `|`) + `)`

// strftime maps fail2ban's %-codes (strptime.py) to Go fragments.
var strftime = map[string]string{
	"Y": `\d{4}`, "ExY": `\d{4}`, "y": `\d{2}`, "Exy": `\d{2}`,
	"m": `[01]?\d`, "Exm": `[01]\d`, "d": `[ 0-3]?\d`, "Exd": `[0-3]\d`,
	"H": `[0-2]?\d`, "ExH": `[0-2]\d`, "k": ` ?[0-2]?\d`, "Exk": ` ?[0-2]?\d`,
	"I": `[01]?\d`, "l": ` ?1?\d`, "Exl": ` ?1?\d`, "M": `[0-5]?\d`, "ExM": `[0-5]\d`,
	"S": `[0-6]?\d`, "ExS": `[0-6]\d`, "f": `\d+`, "p": `[AaPp][Mm]`,
	"z": zoneRE, "Exz": zoneRE, "Z": `[A-Z]{3,5}`, "ExZ": `[A-Z]{3,5}`,
	"a": `[A-Za-z]{3}`, "A": `[A-Za-z]+`, "b": `[A-Za-z]{3}`, "B": `[A-Za-z]+`,
	"j": `\d{1,3}`, "s": `\d+`, "%": `%`,
}

var strftimeRe = regexp.MustCompile(`%(Ex[YymdHkIlMSzZ]|[YymdHkIlMSfpzZaAbBjs%])`)

// sepBackref is fail2ban's (?P<_sep>[-/.])...(?P=_sep): the same separator
// twice, a backreference RE2 lacks. Any separator of the set will do to find
// a date.
var sepBackref = regexp.MustCompile(`\(\?P<_sep>(\[[^\]]*\])\)`)

// dates is where a filter's datepattern finds the date, as Go regexps
// without anchors: at the start of the line (start), and between the
// brackets that fail2ban leaves as "[]" in the middle of the line once it
// has cut the date out (mid: an access log's "- - [18/Nov/2018:...]").
// Either may be empty.
type dates struct {
	start, mid string
	// anywhere: fail2ban's default templates, which it searches
	// anywhere in the line (mid is then only where a failregex has "[]").
	anywhere bool
	// epoch: the datepattern is EPOCH, whose fail2ban template also takes
	// the date inside an audit record's "audit(EPOCH:SERIAL)" (see
	// auditDated).
	epoch bool
}

// anyDate is fail2ban's default: its templates are searched anywhere in
// the line.
var anyDate = dates{start: defaultDate, mid: defaultDate, anywhere: true}

// bracketDate is a template that takes the date in the first brackets of
// the line: "^[^\[]*\[(...)" keeps the text up to "[" and cuts the
// group, so the failregex sees "[]" there.
var bracketDate = regexp.MustCompile(`^\^\[\^\\\[\]\*\\\[\((.*)\)$`)

// dateRegex converts a filter's datepattern (one template a line) into
// Go regexps for the date (see dates). It refuses a date pattern that
// keeps other text outside the date (another capture group, or a date
// searched anywhere that is not fail2ban's default): fail2ban cuts only
// the date out of the line and matches the failregex on the rest, which
// a whole-line pattern cannot mirror in general.
func dateRegex(datepattern string) (dates, error) {
	if strings.TrimSpace(datepattern) == "" {
		return anyDate, nil
	}
	var alts, mids []string
	epoch := false
	for _, t := range strings.Split(datepattern, "\n") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		mid := false
		if m := bracketDate.FindStringSubmatch(t); m != nil {
			t, mid = "^"+m[1], true
		}
		anchored := false
		for _, pre := range []string{"{^LN-BEG}", "^"} {
			if strings.HasPrefix(t, pre) {
				t, anchored = t[len(pre):], true
			}
		}
		switch strings.ToUpper(t) {
		case "", "{DEFAULT}":
			alts = append(alts, defaultDate)
			continue
		case "EPOCH", "LEPOCH":
			alts = append(alts, epochRE)
			epoch = epoch || strings.EqualFold(t, "EPOCH")
			continue
		case "TAI64N":
			alts = append(alts, tai64RE)
			continue
		}
		if !anchored {
			return dates{}, fmt.Errorf("datepattern %q is not anchored at the line's start: fail2ban finds it anywhere and matches the rest", t)
		}
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(t, `\(`, ``), "(?", ""), "(") {
			return dates{}, fmt.Errorf("datepattern %q keeps text around the date (a capture group): fail2ban matches that text with the failregex", t)
		}
		sep := ""
		if m := sepBackref.FindStringSubmatch(t); m != nil {
			sep = m[1]
			t = sepBackref.ReplaceAllString(t, "$1")
			t = strings.ReplaceAll(t, "(?P=_sep)", sep)
		}
		t = strings.ReplaceAll(t, "{DATE}", "\x00")
		t = strftimeRe.ReplaceAllStringFunc(t, func(m string) string { return strftime[m[1:]] })
		t = strings.ReplaceAll(t, "\x00", defaultDate)
		g, err := translatePython(t)
		if err != nil {
			return dates{}, fmt.Errorf("datepattern %q: %w", t, err)
		}
		if mid {
			mids = append(mids, g)
			continue
		}
		alts = append(alts, g)
	}
	return dates{start: oneOf(alts), mid: oneOf(mids), epoch: epoch && len(alts) == 1 && len(mids) == 0}, nil
}

// auditDated puts an EPOCH date back where fail2ban cut it from an audit
// record: its EPOCH template (datetemplate.py, DateEpoch) takes the date
// at the line's start, after a leading '[', or right after "audit(" when
// ":SERIAL)" follows, and the failregex then sees "audit(:SERIAL)", which
// selinux-common.conf's failregex spells `audit\(:\d+\)`. The date is
// searched from the line's left, and an audit record's first ten-digit
// number is its timestamp: nothing before "audit(" has one. ok is false
// when lbody has no such place.
func auditDated(lbody string) (string, bool) {
	const at = `audit\(:`
	i := strings.Index(lbody, at)
	if i < 0 || strings.Contains(lbody[i+len(at):], at) {
		return "", false
	}
	return lbody[:i] + `audit\(` + epochRE + `:` + lbody[i+len(at):], true
}

// oneOf is an alternation of regexps, "" for none.
func oneOf(alts []string) string {
	switch len(alts) {
	case 0:
		return ""
	case 1:
		return alts[0]
	}
	return `(?:` + strings.Join(alts, `|`) + `)`
}
