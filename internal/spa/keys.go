package spa

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Key text formats: one key per line, "TYPE BASE64" with standard padded
// base64; blank lines and lines starting with # are ignored, so a key file
// can carry a comment.
const (
	typeX25519Private  = "moat-spa-x25519-private"   // 32-byte X25519 scalar
	typeMLKEMPrivate   = "moat-spa-mlkem768-private" // 64-byte ML-KEM-768 seed (d || z)
	typeX25519Public   = "moat-spa-x25519"           // 32-byte X25519 point
	typeHybridPublic   = "moat-spa-mlkem768x25519"   // X-Wing public key: ML-KEM-768 (1184) || X25519 (32)
	typePSK            = "moat-spa-psk"              // 32 random bytes, the same line on both sides
	pskLen             = 32
	mlkem768PublicSize = 1184
)

var b64 = base64.StdEncoding

// PrivateKey is an X25519 identity: a client's, or the server's. A server
// key may also hold an ML-KEM-768 key, which makes it accept the hybrid
// suite too.
type PrivateKey struct {
	x  *ecdh.PrivateKey
	pq *mlkem.DecapsulationKey768 // nil: no hybrid suite
}

// PublicKey is the public half of a PrivateKey, as a client stores the
// server's key (the suite follows from it) or a server stores a client's.
type PublicKey struct {
	x      *ecdh.PublicKey
	hybrid hpke.PublicKey // nil: X25519 only
}

// PSK is a pre-shared secret for the PSK suite.
type PSK struct {
	id  ID
	key []byte // the AES-256-GCM key derived from the secret
}

// GenerateKey makes an X25519 identity, for a client or a server. It
// returns the private key file's text and the public key line to paste
// into the other side's config.
func GenerateKey() (privateText, publicLine string, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("spa: generating an X25519 key: %w", err)
	}
	pk := &PrivateKey{x: k}
	return pk.text(), pk.Public().String(), nil
}

// GenerateHybridKey makes a server key that accepts both the X25519 and
// the hybrid ML-KEM-768+X25519 suite. Its public line makes clients use
// the hybrid suite.
func GenerateHybridKey() (privateText, publicLine string, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("spa: generating an X25519 key: %w", err)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return "", "", fmt.Errorf("spa: generating an ML-KEM-768 key: %w", err)
	}
	pk := &PrivateKey{x: k, pq: dk}
	return pk.text(), pk.Public().String(), nil
}

// GeneratePSK makes a pre-shared secret line for the PSK suite: the same
// line goes in the client's file and the server's config.
func GeneratePSK() (string, error) {
	b := make([]byte, pskLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("spa: generating a secret: %w", err)
	}
	return typePSK + " " + b64.EncodeToString(b), nil
}

func (k *PrivateKey) text() string {
	var b strings.Builder
	b.WriteString("# moat SPA private key: keep it secret (mode 0600); share only the public line\n")
	b.WriteString(typeX25519Private + " " + b64.EncodeToString(k.x.Bytes()) + "\n")
	if k.pq != nil {
		b.WriteString(typeMLKEMPrivate + " " + b64.EncodeToString(k.pq.Bytes()) + "\n")
	}
	return b.String()
}

// Public returns the public key: hybrid if the private key has an ML-KEM part.
func (k *PrivateKey) Public() *PublicKey {
	p := &PublicKey{x: k.x.PublicKey()}
	if k.pq != nil {
		// Cannot fail: both halves are valid keys of the right types.
		p.hybrid, _ = hpke.NewHybridPublicKey(k.pq.EncapsulationKey(), p.x)
	}
	return p
}

// Hybrid reports whether the key takes the hybrid suite.
func (k *PrivateKey) Hybrid() bool { return k.pq != nil }

// String writes the public key line: "moat-spa-x25519 BASE64" or
// "moat-spa-mlkem768x25519 BASE64".
func (p *PublicKey) String() string {
	if p.hybrid != nil {
		return typeHybridPublic + " " + b64.EncodeToString(p.hybrid.Bytes())
	}
	return typeX25519Public + " " + b64.EncodeToString(p.x.Bytes())
}

// Hybrid reports whether a client sealing to this server key uses the
// hybrid suite.
func (p *PublicKey) Hybrid() bool { return p.hybrid != nil }

// ID is the wire id of a client with this public key.
func (p *PublicKey) ID() ID { return keyID("moat-spa/1 client id", p.x.Bytes()) }

// ID is the wire id of the clients holding this secret.
func (k *PSK) ID() ID { return k.id }

func keyID(label string, b []byte) ID {
	h := sha256.New()
	h.Write([]byte(label))
	h.Write(b)
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// keyLines yields the key lines of a key file's text.
func keyLines(text string) [][2]string {
	var out [][2]string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		typ, val, _ := strings.Cut(line, " ")
		out = append(out, [2]string{typ, strings.TrimSpace(val)})
	}
	return out
}

func decodeKey(typ, val string, n int) ([]byte, error) {
	b, err := b64.DecodeString(val)
	if err != nil {
		return nil, fmt.Errorf("spa: %s key: not base64: %w", typ, err)
	}
	if len(b) != n {
		return nil, fmt.Errorf("spa: %s key: %d bytes, want %d", typ, len(b), n)
	}
	return b, nil
}

// ParsePrivateKey reads a private key file's text, as GenerateKey or
// GenerateHybridKey wrote it.
func ParsePrivateKey(text string) (*PrivateKey, error) {
	var k PrivateKey
	for _, l := range keyLines(text) {
		switch l[0] {
		case typeX25519Private:
			if k.x != nil {
				return nil, errors.New("spa: private key file has two X25519 keys")
			}
			b, err := decodeKey(l[0], l[1], 32)
			if err != nil {
				return nil, err
			}
			if k.x, err = ecdh.X25519().NewPrivateKey(b); err != nil {
				return nil, fmt.Errorf("spa: X25519 private key: %w", err)
			}
		case typeMLKEMPrivate:
			if k.pq != nil {
				return nil, errors.New("spa: private key file has two ML-KEM keys")
			}
			b, err := decodeKey(l[0], l[1], mlkem.SeedSize)
			if err != nil {
				return nil, err
			}
			if k.pq, err = mlkem.NewDecapsulationKey768(b); err != nil {
				return nil, fmt.Errorf("spa: ML-KEM-768 private key: %w", err)
			}
		case typeX25519Public, typeHybridPublic, typePSK:
			return nil, fmt.Errorf("spa: %q is not a private key line; a private key file starts %q", l[0], typeX25519Private)
		default:
			return nil, fmt.Errorf("spa: unknown key type %q; want %q", l[0], typeX25519Private)
		}
	}
	if k.x == nil {
		return nil, fmt.Errorf("spa: no %q line in the private key file", typeX25519Private)
	}
	return &k, nil
}

// ParsePublicKey reads a public key line.
func ParsePublicKey(line string) (*PublicKey, error) {
	ls := keyLines(line)
	if len(ls) != 1 {
		return nil, fmt.Errorf("spa: want one public key line like %q, got %d lines", typeX25519Public+" BASE64", len(ls))
	}
	typ, val := ls[0][0], ls[0][1]
	switch typ {
	case typeX25519Public:
		b, err := decodeKey(typ, val, 32)
		if err != nil {
			return nil, err
		}
		x, err := ecdh.X25519().NewPublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("spa: X25519 public key: %w", err)
		}
		return &PublicKey{x: x}, nil
	case typeHybridPublic:
		b, err := decodeKey(typ, val, mlkem768PublicSize+32)
		if err != nil {
			return nil, err
		}
		h, err := hpke.MLKEM768X25519().NewPublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("spa: ML-KEM-768+X25519 public key: %w", err)
		}
		// X-Wing serializes the X25519 share last; the client MAC needs it.
		x, err := ecdh.X25519().NewPublicKey(b[mlkem768PublicSize:])
		if err != nil {
			return nil, fmt.Errorf("spa: ML-KEM-768+X25519 public key: %w", err)
		}
		return &PublicKey{x: x, hybrid: h}, nil
	case typeX25519Private, typeMLKEMPrivate:
		return nil, fmt.Errorf("spa: that is a private key (%q); paste the public line, never the private one", typ)
	}
	return nil, fmt.Errorf("spa: unknown public key type %q; want %q or %q", typ, typeX25519Public, typeHybridPublic)
}

// ParsePSK reads a pre-shared secret line.
func ParsePSK(line string) (*PSK, error) {
	ls := keyLines(line)
	if len(ls) != 1 || ls[0][0] != typePSK {
		return nil, fmt.Errorf("spa: want one secret line like %q", typePSK+" BASE64")
	}
	b, err := decodeKey(typePSK, ls[0][1], pskLen)
	if err != nil {
		return nil, err
	}
	k := &PSK{id: keyID("moat-spa/1 psk id", b)}
	if k.key, err = hkdf.Key(sha256.New, b, []byte("moat-spa/1 psk"), string(k.id[:]), 32); err != nil {
		return nil, fmt.Errorf("spa: deriving the PSK key: %w", err)
	}
	return k, nil
}

func (k *PSK) aead() cipher.AEAD {
	// Cannot fail: the key is 32 bytes and GCM's defaults are valid.
	blk, _ := aes.NewCipher(k.key)
	g, _ := cipher.NewGCM(blk)
	return g
}

// macKey derives the client MAC key from the static X25519 agreement of
// a client and a server (either side computes it with its own private key
// and the other's public key). The public keys go into the derivation so a
// key is bound to this pair, not just to a shared secret.
func macKey(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, clientPub, serverPub []byte) ([]byte, error) {
	shared, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("spa: X25519 with the peer key: %w", err)
	}
	info := string(clientPub) + string(serverPub)
	return hkdf.Key(sha256.New, shared, []byte("moat-spa/1 mac"), info, 32)
}
