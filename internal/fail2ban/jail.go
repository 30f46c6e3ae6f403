package fail2ban

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Jail is one jail section of jail.conf/jail.local/jail.d, [DEFAULT]
// applied and interpolated.
type Jail struct {
	Name       string
	Enabled    bool
	Filter     string            // filter.d file name
	FilterArgs map[string]string // filter = name[mode=aggressive]
	MaxRetry   int
	FindTime   time.Duration
	BanTime    time.Duration // < 0: for ever (fail2ban's bantime = -1)
	Port       string        // as written: "http,https", "ssh", "0:65535"
	Protocol   string
	LogPath    []string
	Backend    string
	// FilterOpts are filter options (failregex, datepattern...) that the
	// jail section itself sets; they win over the filter's.
	FilterOpts map[string]string
}

// LoadJails reads dir/jail.conf, dir/jail.d/*.conf, dir/jail.local and
// dir/jail.d/*.local, in fail2ban's order, and returns every jail in
// the order they first appear.
func LoadJails(dir string) ([]Jail, error) {
	if _, err := os.Stat(dir + "/jail.conf"); err != nil {
		if _, err2 := os.Stat(dir + "/jail.local"); err2 != nil {
			return nil, fmt.Errorf("no fail2ban jails in %s: %w", dir, err)
		}
	}
	c := newConfig()
	if err := c.readLayered(dir, "jail"); err != nil {
		return nil, err
	}
	var jails []Jail
	for _, name := range c.order {
		if name == "INCLUDES" || name == "Definition" || name == "Init" || strings.HasPrefix(name, "KNOWN/") {
			continue
		}
		j, err := c.jail(name)
		if err != nil {
			return nil, fmt.Errorf("jail %s: %w", name, err)
		}
		jails = append(jails, j)
	}
	return jails, nil
}

func (c *config) jail(name string) (Jail, error) {
	j := Jail{Name: name, FilterArgs: map[string]string{}, FilterOpts: map[string]string{}}
	opt := func(k, def string) (string, error) {
		if _, ok := c.raw(name, k); !ok {
			return def, nil
		}
		return c.get(name, k, nil)
	}
	en, err := opt("enabled", "false")
	if err != nil {
		return j, err
	}
	if j.Enabled, err = parseBool(en); err != nil {
		return j, fmt.Errorf("enabled: %w", err)
	}
	if !j.Enabled {
		// fail2ban does not read a disabled jail's options: a broken
		// one must not stop the import of the others.
		return j, nil
	}
	flt, err := opt("filter", "")
	if err != nil {
		return j, err
	}
	if j.Filter, j.FilterArgs, err = extractOptions(flt); err != nil {
		return j, fmt.Errorf("filter %q: %w", flt, err)
	}
	for _, k := range []string{"maxretry", "findtime", "bantime"} {
		v, err := opt(k, "")
		if err != nil {
			return j, err
		}
		if v == "" {
			continue
		}
		if k == "maxretry" {
			if j.MaxRetry, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return j, fmt.Errorf("maxretry %q: want a whole number", v)
			}
			continue
		}
		d, err := ParseTime(v)
		if err != nil {
			return j, fmt.Errorf("%s: %w", k, err)
		}
		if k == "findtime" {
			j.FindTime = d
		} else {
			j.BanTime = d
		}
	}
	if j.Port, err = opt("port", ""); err != nil {
		return j, err
	}
	if j.Protocol, err = opt("protocol", "tcp"); err != nil {
		return j, err
	}
	if j.Backend, err = opt("backend", "auto"); err != nil {
		return j, err
	}
	lp, err := opt("logpath", "")
	if err != nil {
		return j, err
	}
	for _, l := range splitLines(lp) {
		// fail2ban's " head"/" tail" suffix says where to start reading.
		l = strings.TrimSuffix(strings.TrimSuffix(l, " tail"), " head")
		j.LogPath = append(j.LogPath, strings.TrimSpace(l))
	}
	// Filter options written in the jail section itself (not inherited
	// from [DEFAULT]) override the filter's.
	for _, k := range filterOpts {
		if _, own := c.sections[name][k]; own {
			if v, err := c.get(name, k, nil); err == nil {
				j.FilterOpts[k] = v
			}
		}
	}
	return j, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q: want true or false", s)
}

var optionRe = regexp.MustCompile(`(?s)^([^\[]+)(?:\[(.*)\])?\s*$`)
var optionArgRe = regexp.MustCompile(`(?s)\s*([\w\-_.]+)=(?:"([^"]*)"|'([^']*)'|([^,\]]*))(?:,|\]\s*\[|$)`)

// extractOptions splits "name[k=v, k2="v 2"]" as fail2ban's helper of the
// same name does.
func extractOptions(s string) (string, map[string]string, error) {
	m := optionRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return "", nil, fmt.Errorf("want name or name[key=value, ...]")
	}
	args := map[string]string{}
	rest := m[2]
	for strings.TrimSpace(rest) != "" {
		a := optionArgRe.FindStringSubmatchIndex(rest)
		if a == nil || a[0] != 0 {
			return "", nil, fmt.Errorf("unexpected %q in the arguments", firstN(strings.TrimSpace(rest), 25))
		}
		var v string
		switch {
		case a[4] >= 0:
			v = rest[a[4]:a[5]]
		case a[6] >= 0:
			v = rest[a[6]:a[7]]
		default:
			v = rest[a[8]:a[9]]
		}
		args[strings.TrimSpace(rest[a[2]:a[3]])] = strings.TrimSpace(v)
		rest = rest[a[1]:]
	}
	return strings.TrimSpace(m[1]), args, nil
}

var timePartRe = regexp.MustCompile(`(?i)^([+-]?)\s*(\d+(?:\.\d+)?)\s*(years?|yea?|yy?|months?|mon?|weeks?|wee?|ww?|days?|da|dd?|hours?|hou?|hh?|minutes?|min?|mm?|seconds?|sec?|ss?)?\s*`)

// ParseTime reads fail2ban's time values (MyTime.str2seconds): "600",
// "10m", "1h 30m", "1d", "2w", "1mo" (a twelfth of a year), "1y", and
// sums like "1h+30m". A negative total (bantime = -1) is fail2ban's "for
// ever".
func ParseTime(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty time")
	}
	var total float64
	for s != "" {
		m := timePartRe.FindStringSubmatch(s)
		if m == nil || m[0] == "" {
			return 0, fmt.Errorf("time %q: want seconds or a value like 10m, 1h, 1d, 1w", orig)
		}
		n, _ := strconv.ParseFloat(m[2], 64)
		unit := strings.ToLower(m[3])
		var mul float64 = 1
		switch {
		case unit == "":
		case strings.HasPrefix(unit, "y"):
			mul = (365*3 + 366) * 86400 / 4.0
		case strings.HasPrefix(unit, "mo"):
			mul = (365*3 + 366) * 86400 / 4.0 / 12
		case strings.HasPrefix(unit, "w"):
			mul = 7 * 86400
		case strings.HasPrefix(unit, "d"):
			mul = 86400
		case strings.HasPrefix(unit, "h"):
			mul = 3600
		case strings.HasPrefix(unit, "mi") || unit == "m" || unit == "mm":
			mul = 60
		case strings.HasPrefix(unit, "s"):
			mul = 1
		}
		if m[1] == "-" {
			n = -n
		}
		total += n * mul
		s = s[len(m[0]):]
	}
	if math.Abs(total) > float64(math.MaxInt64/int64(time.Second)) {
		return 0, fmt.Errorf("time %q is too long", orig)
	}
	return time.Duration(total * float64(time.Second)), nil
}

// servicePorts reads /etc/services-style name → port for a protocol.
func servicePorts(path, proto string) map[string]int {
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		num, pr, ok := strings.Cut(fields[1], "/")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || pr != proto {
			continue
		}
		for _, name := range append([]string{fields[0]}, fields[2:]...) {
			if _, dup := out[name]; !dup {
				out[name] = n
			}
		}
	}
	return out
}
