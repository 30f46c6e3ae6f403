package kernlog

import "time"

// Time reads the timestamp at the start of a log line, so a replay keeps
// the time between packets: BSD syslog and journalctl ("Mar  1 12:00:00",
// "Mar 01 12:00:00.123456"), ISO 8601 (rsyslog's high precision format,
// journalctl -o short-iso: "2026-03-01T12:00:00.123456+00:00"), and
// dmesg -T ("[Sun Mar  1 12:00:00 2026]"). Times without a zone are in
// now's location; a BSD timestamp, which has no year, is put in the year
// that makes it no later than now (a day of slack for clock skew). dmesg's
// plain "[ 1234.567890]" counts from boot and is not read (ok false).
func Time(line []byte, now time.Time) (time.Time, bool) {
	loc := now.Location()
	if len(line) > 0 && line[0] == '[' {
		// dmesg -T: "[Sun Mar  1 12:00:00 2026]".
		b := line[1:]
		if len(b) < 4 || b[3] != ' ' {
			return time.Time{}, false
		}
		mon, day, h, m, s, _, rest, ok := bsd(b[4:])
		if !ok || len(rest) < 6 || rest[0] != ' ' || rest[5] != ']' {
			return time.Time{}, false
		}
		year, ok := digits(rest[1:5])
		if !ok || year < 1970 {
			return time.Time{}, false
		}
		return time.Date(year, mon, day, h, m, s, 0, loc), true
	}
	if len(line) >= 19 && line[4] == '-' && line[10] == 'T' {
		return iso(line, loc)
	}
	mon, day, h, m, s, ns, _, ok := bsd(line)
	if !ok {
		return time.Time{}, false
	}
	t := time.Date(now.Year(), mon, day, h, m, s, ns, loc)
	if t.After(now.Add(24 * time.Hour)) {
		t = time.Date(now.Year()-1, mon, day, h, m, s, ns, loc)
	}
	return t, true
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// bsd reads "Mar  1 12:00:00" or "Mar 01 12:00:00.123456" and returns
// what follows.
func bsd(b []byte) (mon time.Month, day, h, m, s, ns int, rest []byte, ok bool) {
	if len(b) < 15 || b[3] != ' ' || b[6] != ' ' || b[9] != ':' || b[12] != ':' {
		return
	}
	for i, name := range months {
		if string(b[:3]) == name {
			mon = time.Month(i + 1)
		}
	}
	dd := b[4:6]
	if dd[0] == ' ' {
		dd = dd[1:]
	}
	var ok1, ok2, ok3, ok4 bool
	day, ok1 = digits(dd)
	h, ok2 = digits(b[7:9])
	m, ok3 = digits(b[10:12])
	s, ok4 = digits(b[13:15])
	if mon == 0 || !ok1 || !ok2 || !ok3 || !ok4 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60 {
		return
	}
	rest = b[15:]
	ns, rest = fraction(rest)
	return mon, day, h, m, s, ns, rest, true
}

// iso reads "2026-03-01T12:00:00[.frac](Z|+hh:mm|+hhmm)".
func iso(b []byte, loc *time.Location) (time.Time, bool) {
	if b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	mon, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	h, ok4 := digits(b[11:13])
	m, ok5 := digits(b[14:16])
	s, ok6 := digits(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60 {
		return time.Time{}, false
	}
	ns, rest := fraction(b[19:])
	switch {
	case len(rest) > 0 && rest[0] == 'Z':
		loc = time.UTC
	case len(rest) >= 5 && (rest[0] == '+' || rest[0] == '-'):
		zh, okh := digits(rest[1:3])
		mm := rest[3:5]
		if mm[0] == ':' && len(rest) >= 6 {
			mm = rest[4:6]
		}
		zm, okm := digits(mm)
		if !okh || !okm || zh > 23 || zm > 59 {
			return time.Time{}, false
		}
		off := (zh*60 + zm) * 60
		if rest[0] == '-' {
			off = -off
		}
		t := time.Date(year, time.Month(mon), day, h, m, s, ns, time.UTC).Add(-time.Duration(off) * time.Second)
		return t.In(loc), true
	}
	return time.Date(year, time.Month(mon), day, h, m, s, ns, loc), true
}

// fraction reads ".123456" (up to nanoseconds) at the start of b.
func fraction(b []byte) (ns int, rest []byte) {
	if len(b) < 2 || b[0] != '.' {
		return 0, b
	}
	i, scale := 1, 100_000_000
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		ns += int(b[i]-'0') * scale
		scale /= 10
	}
	return ns, b[i:]
}

func digits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
