// Package fwknop decodes SPA packets from fwknop clients in their default
// mode, Rijndael (AES-256-CBC) with HMAC-SHA256, so moat can open doors for
// the clients people already have. It follows fwknopd's checks in its
// order (docs: ../shared/findings/ecosystem-notes.md section 1): the HMAC
// is checked in constant time before anything is decrypted.
//
// fwknop's key derivation is OpenSSL's EVP_BytesToKey with MD5 and one
// iteration; no module implements it, so it is written here (a dozen
// lines). Everything else is the standard library. The package is pure:
// time and the replay cache are the caller's.
package fwknop

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// Sizes from fwknopd (server/incoming_spa.c, lib/fko_limits.h).
const (
	MinPacket = 140  // MIN_SPA_DATA_SIZE
	MaxPacket = 1500 // MAX_SPA_PACKET_LEN
	gpgFrom   = 400  // fko_encryption_type: this long or longer is GPG

	saltedB64 = "U2FsdGVkX1" // base64 of "Salted__", stripped on the wire
	tagLen    = 43           // base64 HMAC-SHA256, unpadded
)

var b64 = base64.RawStdEncoding

// Keys are one access.conf stanza's KEY_BASE64 and HMAC_KEY_BASE64, decoded.
type Keys struct {
	Enc  []byte // the Rijndael key: the raw bytes feed the KDF
	HMAC []byte
}

// Message is a decoded SPA message.
type Message struct {
	Rand          string // 16 digits
	User          string
	Timestamp     int64 // Unix seconds, the client's clock
	Version       string
	Type          int    // 0 command, 1 access, 2 NAT access, 3 access with timeout, ...
	Message       string // for access: "allow_ip,proto/port[,proto/port...]"
	NAT           string // "ip,port", for NAT types
	ClientTimeout int    // -f N, 0 if absent
}

// Errors, in the order the checks run. Test with errors.Is.
var (
	ErrSize      = errors.New("fwknop: packet size outside 140..1500")
	ErrPrefix    = errors.New("fwknop: packet starts with the Salted__ prefix (a replay trick)")
	ErrNotBase64 = errors.New("fwknop: packet is not base64")
	ErrGPG       = errors.New("fwknop: packet looks like GPG (400 bytes or more); moat accepts only Rijndael with HMAC")
	ErrHMAC      = errors.New("fwknop: HMAC does not match (wrong HMAC key, altered packet, or the client runs without --use-hmac)")
	ErrDecrypt   = errors.New("fwknop: decryption failed (wrong Rijndael key?)")
	ErrDigest    = errors.New("fwknop: inner digest does not match")
	ErrFields    = errors.New("fwknop: malformed message fields")
)

// ReplayDigest is fwknopd's replay key: SHA-256 of the wire bytes.
func ReplayDigest(pkt []byte) [32]byte { return sha256.Sum256(pkt) }

// Decode checks and decrypts one packet. It does not check the timestamp
// or the replay digest: the caller owns time and the cache.
func Decode(pkt []byte, k Keys) (Message, error) {
	if len(pkt) < MinPacket || len(pkt) > MaxPacket {
		return Message{}, ErrSize
	}
	if bytes.HasPrefix(pkt, []byte(saltedB64)) {
		return Message{}, ErrPrefix
	}
	for _, c := range pkt {
		if !isB64(c) {
			return Message{}, ErrNotBase64
		}
	}
	if len(pkt) >= gpgFrom {
		return Message{}, ErrGPG
	}
	if !newMAC(k.HMAC).ok(pkt) {
		return Message{}, ErrHMAC
	}
	return decrypt(pkt, k.Enc)
}

// mac checks the tag at the end of a packet, in constant time. A
// verifier keeps one per stanza: the hash is keyed once and the buffers
// live here, so a forged packet allocates nothing.
type mac struct {
	h    hash.Hash
	sum  [sha256.Size]byte
	want [tagLen]byte
}

var saltedPrefix = []byte(saltedB64)

func newMAC(key []byte) *mac { return &mac{h: hmac.New(sha256.New, key)} }

func (m *mac) ok(pkt []byte) bool {
	body, tag := pkt[:len(pkt)-tagLen], pkt[len(pkt)-tagLen:]
	m.h.Reset()
	m.h.Write(saltedPrefix)
	m.h.Write(body)
	b64.Encode(m.want[:], m.h.Sum(m.sum[:0]))
	return subtle.ConstantTimeCompare(m.want[:], tag) == 1
}

// decrypt is everything after the HMAC: the packet is authentic.
func decrypt(pkt, enc []byte) (Message, error) {
	body := pkt[:len(pkt)-tagLen]
	raw, err := b64.DecodeString(saltedB64 + string(body))
	if err != nil || len(raw) < 16+16 || (len(raw)-16)%aes.BlockSize != 0 {
		return Message{}, ErrDecrypt
	}
	key, iv := bytesToKey(enc, raw[8:16])
	blk, err := aes.NewCipher(key)
	if err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	pt := raw[16:]
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(pt, pt)
	// Lenient PKCS#7, as rij_decrypt: inconsistent padding stays in place
	// (and then fails the printable check or the digest).
	if n := int(pt[len(pt)-1]); n >= 1 && n <= aes.BlockSize {
		if bytes.Count(pt[len(pt)-n:], []byte{byte(n)}) == n {
			pt = pt[:len(pt)-n]
		}
	}
	if len(pt) < 17 || pt[16] != ':' || !allDigits(pt[:16]) {
		return Message{}, ErrDecrypt
	}
	return decodeFields(pt)
}

// bytesToKey is OpenSSL's EVP_BytesToKey(MD5, 1 iteration) for AES-256:
// D1 = MD5(pass‖salt), Di = MD5(Di-1‖pass‖salt); key = D1‖D2, IV = D3.
func bytesToKey(pass, salt []byte) (key, iv []byte) {
	var out, prev []byte
	for len(out) < 48 {
		h := md5.New()
		h.Write(prev)
		h.Write(pass)
		h.Write(salt)
		prev = h.Sum(nil)
		out = append(out, prev...)
	}
	return out[:32], out[32:48]
}

// decodeFields is fko_decode_spa_data for SHA-256 inner digests.
func decodeFields(pt []byte) (Message, error) {
	for _, c := range pt {
		if c < 0x20 || c > 0x7e {
			return Message{}, ErrFields
		}
	}
	i := bytes.LastIndexByte(pt, ':')
	if i < 0 || len(pt)-i-1 != 43 { // SHA-256 (fwknop's default); -m md5/sha1/sha384/sha512 are not taken
		return Message{}, fmt.Errorf("%w: inner digest is not SHA-256", ErrDigest)
	}
	inner, dig := pt[:i], pt[i+1:]
	s := sha256.Sum256(inner)
	if b64.EncodeToString(s[:]) != string(dig) {
		return Message{}, ErrDigest
	}
	f := strings.Split(string(inner), ":")
	if len(f) < 6 || len(f) > 9 {
		return Message{}, fmt.Errorf("%w: %d fields", ErrFields, len(f))
	}
	var m Message
	var err error
	m.Rand = f[0]
	if m.User, err = unb64(f[1]); err != nil {
		return Message{}, err
	}
	if m.Timestamp, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return Message{}, fmt.Errorf("%w: timestamp %q", ErrFields, f[2])
	}
	m.Version = f[3]
	if m.Type, err = strconv.Atoi(f[4]); err != nil || m.Type < 0 || m.Type > 6 {
		return Message{}, fmt.Errorf("%w: message type %q", ErrFields, f[4])
	}
	if m.Message, err = unb64(f[5]); err != nil {
		return Message{}, err
	}
	rest := f[6:]
	nat := m.Type == 2 || m.Type == 4 || m.Type == 5 || m.Type == 6
	if nat {
		if len(rest) == 0 {
			return Message{}, fmt.Errorf("%w: NAT type without NAT field", ErrFields)
		}
		if m.NAT, err = unb64(rest[0]); err != nil {
			return Message{}, err
		}
		rest = rest[1:]
	}
	timeout := m.Type == 3 || m.Type == 4 || m.Type == 6
	if timeout {
		if len(rest) == 0 {
			return Message{}, fmt.Errorf("%w: timeout type without timeout", ErrFields)
		}
		if m.ClientTimeout, err = strconv.Atoi(rest[len(rest)-1]); err != nil || m.ClientTimeout < 0 {
			return Message{}, fmt.Errorf("%w: client timeout %q", ErrFields, rest[len(rest)-1])
		}
		rest = rest[:len(rest)-1]
	}
	if len(rest) > 1 { // at most a server_auth field is left, which moat ignores
		return Message{}, fmt.Errorf("%w: %d unexpected fields", ErrFields, len(rest))
	}
	return m, nil
}

func unb64(s string) (string, error) {
	b, err := b64.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrFields, err)
	}
	return string(b), nil
}

func isB64(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
