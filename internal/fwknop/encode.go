package fwknop

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Access builds the message of an access request the way the fwknop
// client does for `-A PORTS -a ADDR [-f SECONDS] [-U USER]`: type 1, or 3
// with a client timeout. allow is "0.0.0.0" for fwknop's -s (the server
// takes the packet's source).
func Access(user, allow string, ports []Port, timeout int, ts int64) Message {
	var b strings.Builder
	b.WriteString(allow)
	for _, p := range ports {
		b.WriteByte(',')
		b.WriteString(p.String())
	}
	m := Message{User: user, Timestamp: ts, Version: "3.0.0", Type: 1, Message: b.String()}
	if timeout > 0 {
		m.Type, m.ClientTimeout = 3, timeout
	}
	return m
}

// Encode seals m into the datagram a fwknop 2.6 client sends in its
// default mode (Rijndael, HMAC-SHA256, SHA-256 inner digest), so moat's
// client can open ports on a real fwknopd. Rand is filled from rnd when
// empty; the salt always comes from rnd. NAT messages are not built:
// moat's client asks only for access.
func Encode(m Message, k Keys, rnd io.Reader) ([]byte, error) {
	if len(k.Enc) == 0 || len(k.HMAC) == 0 {
		return nil, errors.New("fwknop: a Rijndael key and an HMAC key are both needed (fwknopd refuses packets without HMAC in moat's mode)")
	}
	if m.Type != 1 && m.Type != 3 {
		return nil, fmt.Errorf("fwknop: message type %d: only access requests (1, 3) are built", m.Type)
	}
	if m.Rand == "" {
		var r [16]byte
		if _, err := io.ReadFull(rnd, r[:]); err != nil {
			return nil, fmt.Errorf("fwknop: random: %w", err)
		}
		for i := range r {
			r[i] = '0' + r[i]%10
		}
		m.Rand = string(r[:])
	}
	if len(m.Rand) != 16 || !allDigits([]byte(m.Rand)) {
		return nil, fmt.Errorf("fwknop: rand %q: want 16 digits", m.Rand)
	}
	f := m.Rand + ":" + b64.EncodeToString([]byte(m.User)) + ":" + strconv.FormatInt(m.Timestamp, 10) + ":" +
		m.Version + ":" + strconv.Itoa(m.Type) + ":" + b64.EncodeToString([]byte(m.Message))
	if m.Type == 3 {
		f += ":" + strconv.Itoa(m.ClientTimeout)
	}
	var salt [8]byte
	if _, err := io.ReadFull(rnd, salt[:]); err != nil {
		return nil, fmt.Errorf("fwknop: random: %w", err)
	}
	p := seal(f, k, salt[:])
	if len(p) >= gpgFrom {
		return nil, fmt.Errorf("fwknop: the packet would be %d bytes; fwknopd takes %d or more for GPG: ask for fewer ports", len(p), gpgFrom)
	}
	return p, nil
}

// seal is steps 2 to 6 of ecosystem-notes §1.1 on an encoded field
// string: inner digest, EVP_BytesToKey, AES-256-CBC with PKCS#7,
// "Salted__" framing in base64, HMAC over that text, then the prefix
// stripped and the tag appended.
func seal(fields string, k Keys, salt []byte) []byte {
	d := sha256.Sum256([]byte(fields))
	pt := []byte(fields + ":" + b64.EncodeToString(d[:]))
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	pt = append(pt, bytes.Repeat([]byte{byte(pad)}, pad)...)
	key, iv := bytesToKey(k.Enc, salt)
	blk, _ := aes.NewCipher(key) // a 32-byte key: cannot fail
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(pt, pt)
	enc := b64.EncodeToString(append(append([]byte("Salted__"), salt...), pt...))
	h := hmac.New(sha256.New, k.HMAC)
	h.Write([]byte(enc))
	return []byte(enc[len(saltedB64):] + b64.EncodeToString(h.Sum(nil)))
}
