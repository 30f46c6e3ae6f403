package spa

import (
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// appendHeader writes the clear header: version, suite, client id,
// timestamp (Unix seconds) and nonce.
func appendHeader(b []byte, s Suite, id ID, now time.Time, nonce *[NonceLen]byte) []byte {
	b = append(b, Version, byte(s))
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(now.Unix()))
	return append(b, nonce[:]...)
}

func readNonce(rand io.Reader) (*[NonceLen]byte, error) {
	var n [NonceLen]byte
	if _, err := io.ReadFull(rand, n[:]); err != nil {
		return nil, fmt.Errorf("spa: reading a nonce: %w", err)
	}
	return &n, nil
}

// Seal builds the datagram that asks server for req, signed for the
// client's key. The suite follows from the server key: hybrid if its
// public line is a moat-spa-mlkem768x25519 key.
//
// rand supplies the nonce. HPKE's ephemeral key comes from crypto/rand
// whatever rand is: the standard library's HPKE takes no reader.
func Seal(req Request, server *PublicKey, client *PrivateKey, now time.Time, rand io.Reader) ([]byte, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	suite, pk := SuiteX25519, hpke.PublicKey(nil)
	if server.hybrid != nil {
		suite, pk = SuiteHybrid, server.hybrid
	} else {
		var err error
		if pk, err = hpke.NewDHKEMPublicKey(server.x); err != nil {
			return nil, fmt.Errorf("spa: server key: %w", err)
		}
	}
	clientPub := client.x.PublicKey()
	mk, err := macKey(client.x, server.x, clientPub.Bytes(), server.x.Bytes())
	if err != nil {
		return nil, err
	}
	nonce, err := readNonce(rand)
	if err != nil {
		return nil, err
	}
	pt, err := appendPlaintext(nil, &req, maxPlaintext(suite))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, MaxDatagram)
	out = appendHeader(out, suite, (&PublicKey{x: clientPub}).ID(), now, nonce)
	enc, s, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(hpkeInfo))
	if err != nil {
		return nil, fmt.Errorf("spa: HPKE: %w", err)
	}
	ct, err := s.Seal(out[:HeaderLen], pt)
	if err != nil {
		return nil, fmt.Errorf("spa: HPKE: %w", err)
	}
	out = append(append(out, enc...), ct...)
	m := hmac.New(sha256.New, mk)
	m.Write(out)
	out = m.Sum(out)[:len(out)+MACLen]
	if len(out) > MaxDatagram { // appendPlaintext's bound makes this unreachable
		return nil, fmt.Errorf("spa: datagram is %d bytes, over %d", len(out), MaxDatagram)
	}
	return out, nil
}

// SealPSK builds the datagram that asks for req under a pre-shared secret.
func SealPSK(req Request, psk *PSK, now time.Time, rand io.Reader) ([]byte, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	nonce, err := readNonce(rand)
	if err != nil {
		return nil, err
	}
	pt, err := appendPlaintext(nil, &req, maxPlaintext(SuitePSK))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, MaxDatagram)
	out = appendHeader(out, SuitePSK, psk.id, now, nonce)
	// The GCM nonce is the first 12 bytes of the random nonce: 96 random
	// bits, safe for far more packets than a person ever sends.
	return psk.aead().Seal(out, nonce[:12], pt, out[:HeaderLen]), nil
}
