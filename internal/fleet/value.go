package fleet

import (
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
	if len(b) > maxValue {
		return Value{}, fmt.Errorf("value of %d bytes, more than %d", len(b), maxValue)
	}
	var v Value
	if err := json.Unmarshal(b, &v); err != nil {
		return Value{}, fmt.Errorf("value: %w", err)
	}
	switch {
	case v.V != valueVersion:
		return Value{}, fmt.Errorf("value version %d; this moat reads version %d", v.V, valueVersion)
	case v.Origin == "" || len(v.Origin) > maxOrigin || !printable(v.Origin):
		return Value{}, errors.New("value: bad origin")
	case v.Host == "" || len(v.Host) > maxHost || !printable(v.Host):
		return Value{}, errors.New("value: bad host")
	case len(v.Reason) > maxReason || !printable(v.Reason):
		return Value{}, errors.New("value: bad reason")
	case v.Count < 0:
		return Value{}, errors.New("value: negative count")
	case v.Created.IsZero():
		return Value{}, errors.New("value: no creation time")
	}
	return v, nil
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
