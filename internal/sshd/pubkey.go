package sshd

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// PublicKey is what a public key line says about its key.
type PublicKey struct {
	Type string // "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", ...
	Bits int    // RSA/DSA modulus or curve size; 0 for certificates
}

// keyTypes are the key types OpenSSH 9.x writes into .pub and
// authorized_keys files.
var keyTypes = map[string]bool{
	"ssh-rsa": true, "ssh-dss": true, "ssh-ed25519": true,
	"ecdsa-sha2-nistp256": true, "ecdsa-sha2-nistp384": true, "ecdsa-sha2-nistp521": true,
	"sk-ssh-ed25519@openssh.com": true, "sk-ecdsa-sha2-nistp256@openssh.com": true,
	"ssh-xmss@openssh.com":         true,
	"ssh-rsa-cert-v01@openssh.com": true, "ssh-dss-cert-v01@openssh.com": true, "ssh-ed25519-cert-v01@openssh.com": true,
	"ecdsa-sha2-nistp256-cert-v01@openssh.com": true, "ecdsa-sha2-nistp384-cert-v01@openssh.com": true,
	"ecdsa-sha2-nistp521-cert-v01@openssh.com": true, "sk-ssh-ed25519-cert-v01@openssh.com": true,
	"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": true, "ssh-xmss-cert-v01@openssh.com": true,
}

func isKeyType(t string) bool { return keyTypes[t] }

// ParsePublicKey reads a public key line as found in a .pub file or an
// authorized_keys file: [options] type base64 [comment]. The base64 blob
// must decode and name the same type; key sizes come from the blob.
func ParsePublicKey(line string) (PublicKey, error) {
	s := strings.TrimSpace(line)
	if s == "" || s[0] == '#' {
		return PublicKey{}, errors.New("no key on this line")
	}
	typ, rest := cutField(s)
	if !isKeyType(typ) {
		// authorized_keys options come first; they may quote blanks.
		s = skipOptions(s)
		typ, rest = cutField(s)
		if !isKeyType(typ) {
			return PublicKey{}, fmt.Errorf("no known key type (want ssh-ed25519, ssh-rsa, ecdsa-sha2-..., got %.40q)", typ)
		}
	}
	b64, _ := cutField(rest)
	blob, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s key: base64: %w", typ, err)
	}
	r := wire(blob)
	inner, ok := r.str()
	if !ok || string(inner) != typ {
		return PublicKey{}, fmt.Errorf("%s key: the encoded key says %.40q", typ, inner)
	}
	k := PublicKey{Type: typ}
	switch typ {
	case "ssh-rsa":
		_, ok1 := r.str() // e
		n, ok2 := r.str()
		if !ok1 || !ok2 {
			return PublicKey{}, errors.New("ssh-rsa key: truncated")
		}
		k.Bits = new(big.Int).SetBytes(n).BitLen()
	case "ssh-dss":
		p, ok := r.str()
		if !ok {
			return PublicKey{}, errors.New("ssh-dss key: truncated")
		}
		k.Bits = new(big.Int).SetBytes(p).BitLen()
	case "ecdsa-sha2-nistp256", "sk-ecdsa-sha2-nistp256@openssh.com":
		k.Bits = 256
	case "ecdsa-sha2-nistp384":
		k.Bits = 384
	case "ecdsa-sha2-nistp521":
		k.Bits = 521
	case "ssh-ed25519", "sk-ssh-ed25519@openssh.com":
		k.Bits = 256
	}
	return k, nil
}

func cutField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// skipOptions drops an authorized_keys options field: it ends at the first
// blank outside double quotes, and \" does not end a quote.
func skipOptions(s string) string {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted && i+1 < len(s):
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && (s[i] == ' ' || s[i] == '\t'):
			return s[i+1:]
		}
	}
	return ""
}

// wire reads SSH wire-format strings (RFC 4251: uint32 length, bytes).
type wire []byte

func (w *wire) str() ([]byte, bool) {
	if len(*w) < 4 {
		return nil, false
	}
	n := binary.BigEndian.Uint32(*w)
	if uint64(n) > uint64(len(*w)-4) {
		return nil, false
	}
	s := (*w)[4 : 4+n]
	*w = (*w)[4+n:]
	return s, true
}
