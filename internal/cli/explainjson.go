package cli

import (
	"strconv"
	"unicode/utf8"
)

// appendJSON appends l as one line of JSON, the object encoding/json
// writes for it (the same keys, order and omitempty). Written by hand
// because explain --json prints one object per matched line, and
// encoding/json's reflection was a fifth of explain's time on a million
// lines (BenchmarkExplainJSON); FuzzExplainLineJSON checks that both
// write the same bytes.
func (l *explainLine) appendJSON(b []byte) []byte {
	b = append(b, `{"line":`...)
	b = strconv.AppendInt(b, int64(l.Line), 10)
	b = append(b, `,"rule":`...)
	b = appendJSONString(b, l.Rule)
	if l.Kind != "" {
		b = append(b, `,"kind":`...)
		b = appendJSONString(b, l.Kind)
	}
	b = append(b, `,"ip":`...)
	if l.IP.Zone() == "" {
		// Digits, hex, dots and colons: nothing to escape.
		b = append(b, '"')
		b = l.IP.AppendTo(b)
		b = append(b, '"')
	} else {
		b = appendJSONString(b, l.IP.String())
	}
	if len(l.User) > 0 {
		b = append(b, `,"user":`...)
		b = appendJSONString(b, l.User)
	}
	b = append(b, `,"would_ban":`...)
	b = strconv.AppendBool(b, l.WouldBan)
	if l.Prefix != "" {
		b = append(b, `,"prefix":`...)
		b = appendJSONString(b, l.Prefix)
	}
	if l.Ignored != "" {
		b = append(b, `,"ignored":`...)
		b = appendJSONString(b, l.Ignored)
	}
	if l.Host != "" {
		b = append(b, `,"host":`...)
		b = appendJSONString(b, l.Host)
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. User names come from
// log lines anyone can write: control characters, quotes, HTML's <>&
// (as encoding/json escapes them), U+2028/U+2029 and invalid UTF-8
// (as U+FFFD) are escaped, so a line of output is always one valid
// JSON object.
func appendJSONString[T ~string | ~[]byte](b []byte, s T) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		var rb [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(rb[:copy(rb[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
