package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// valueVersion is the version of the value encoding; a reader refuses
// versions it does not know rather than guessing at their fields.
const valueVersion = 1

// Limits on what a remote host may put in a value: a bucket is shared, and
// a compromised or broken host must not fill memory or logs.
const (
	maxValue  = 4096
	maxReason = 512
	maxHost   = 64
	maxOrigin = 32
)

// Value is what a key holds: the ban as its host made it.
type Value struct {
	V       int       `json:"v"`
	Origin  string    `json:"origin"` // at the publishing host: login, scan, manual
	Reason  string    `json:"reason,omitempty"`
	Host    string    `json:"host"`
	Count   int       `json:"count"`          // how many times the host banned the prefix
	Created time.Time `json:"created"`        // when the host banned it
	Until   time.Time `json:"until,omitzero"` // when the ban ends; zero: until removed
}

// Encode returns v's encoding.
func (v Value) Encode() []byte {
	v.V = valueVersion
	b, _ := json.Marshal(v) // strings, ints and times: cannot fail
	return b
}

// DecodeValue decodes and checks a value from the bucket.
func DecodeValue(b []byte) (Value, error) {
	var d decoder
	return d.value(b)
}

// decoder decodes values, keeping the strings they repeat (origins, hosts,
// reasons: a fleet's million bans carry a handful of each) so that a
// replay does not allocate them once per ban. Not safe for concurrent use.
type decoder struct {
	strs map[string]string
}

// maxInterned bounds the strings a decoder keeps: a bucket whose reasons
// are all different must not grow it without end.
const maxInterned = 4096

func (d *decoder) str(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.strs == nil {
		d.strs = map[string]string{}
	}
	if len(d.strs) < maxInterned {
		d.strs[s] = s
	}
	return s
}

// value decodes and checks a value. Values as Encode writes them (the
// fields in its order, no spaces, printable ASCII strings without escapes)
// take a direct path; anything else goes through encoding/json, which
// gives the same result for what both read (FuzzDecodeValue checks).
func (d *decoder) value(b []byte) (Value, error) {
	if len(b) > maxValue {
		return Value{}, fmt.Errorf("value of %d bytes, more than %d", len(b), maxValue)
	}
	v, ok := d.direct(b)
	if !ok {
		var err error
		if v, err = decodeJSON(b); err != nil {
			return Value{}, err
		}
	}
	if err := check(v); err != nil {
		return Value{}, err
	}
	return v, nil
}

// decodeJSON is the general path, apart so that the direct one's value
// stays off the heap.
func decodeJSON(b []byte) (Value, error) {
	var v Value
	if err := json.Unmarshal(b, &v); err != nil {
		return Value{}, fmt.Errorf("value: %w", err)
	}
	return v, nil
}

// direct reads what Encode writes:
//
//	{"v":1,"origin":"..."[,"reason":"..."],"host":"...","count":N,"created":"TIME"[,"until":"TIME"]}
//
// It reports false for anything else, leaving it to encoding/json.
func (d *decoder) direct(b []byte) (Value, bool) {
	var v Value
	r := reader{b: b}
	var s []byte
	ok := r.lit(`{"v":`) && r.num(&v.V) && r.lit(`,"origin":`) && r.str(&s)
	if !ok {
		return v, false
	}
	v.Origin = d.str(s)
	if r.lit(`,"reason":`) {
		if !r.str(&s) {
			return v, false
		}
		v.Reason = d.str(s)
	}
	if !r.lit(`,"host":`) || !r.str(&s) {
		return v, false
	}
	v.Host = d.str(s)
	if !r.lit(`,"count":`) || !r.num(&v.Count) || !r.lit(`,"created":`) || !r.time(&v.Created) {
		return v, false
	}
	if r.lit(`,"until":`) && !r.time(&v.Until) {
		return v, false
	}
	return v, r.lit("}") && len(r.b) == 0
}

// reader consumes a value from its front.
type reader struct{ b []byte }

func (r *reader) lit(s string) bool {
	if len(r.b) < len(s) || string(r.b[:len(s)]) != s {
		return false
	}
	r.b = r.b[len(s):]
	return true
}

// num reads a non-negative integer of at most 9 digits without leading
// zeros (JSON's form of one).
func (r *reader) num(n *int) bool {
	i, v := 0, 0
	for i < len(r.b) && i < 10 && r.b[i] >= '0' && r.b[i] <= '9' {
		v = v*10 + int(r.b[i]-'0')
		i++
	}
	if i == 0 || i > 9 || i > 1 && r.b[0] == '0' {
		return false
	}
	*n, r.b = v, r.b[i:]
	return true
}

// str reads a string of printable ASCII without escapes.
func (r *reader) str(s *[]byte) bool {
	if len(r.b) == 0 || r.b[0] != '"' {
		return false
	}
	for i := 1; i < len(r.b); i++ {
		switch c := r.b[i]; {
		case c == '"':
			*s, r.b = r.b[1:i], r.b[i+1:]
			return true
		case c < 0x20 || c > 0x7e || c == '\\':
			return false
		}
	}
	return false
}

// time reads a quoted time as encoding/json does (time.Time's
// UnmarshalJSON: RFC 3339).
func (r *reader) time(t *time.Time) bool {
	if len(r.b) == 0 || r.b[0] != '"' {
		return false
	}
	end := bytes.IndexByte(r.b[1:], '"')
	if end < 0 {
		return false
	}
	if t.UnmarshalJSON(r.b[:end+2]) != nil {
		return false
	}
	r.b = r.b[end+2:]
	return true
}

// check refuses a decoded value moat cannot use.
func check(v Value) error {
	switch {
	case v.V != valueVersion:
		return fmt.Errorf("value version %d; this moat reads version %d", v.V, valueVersion)
	case v.Origin == "" || len(v.Origin) > maxOrigin || !printable(v.Origin):
		return errors.New("value: bad origin")
	case v.Host == "" || len(v.Host) > maxHost || !printable(v.Host):
		return errors.New("value: bad host")
	case len(v.Reason) > maxReason || !printable(v.Reason):
		return errors.New("value: bad reason")
	case v.Count < 0:
		return errors.New("value: negative count")
	case v.Created.IsZero():
		return errors.New("value: no creation time")
	}
	return nil
}

// printable: valid UTF-8 without control characters, so that a value
// prints on one line in status, logs and ban lists.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
