package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// qrBlock renders text as a QR code for a terminal with a dark background:
// two modules a character, in half blocks, with the quiet zone around it.
// Medium error correction: a phone's camera reads it off a screen.
func qrBlock(text string) (string, error) {
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return "", fmt.Errorf("qr code: %w", err)
	}
	return q.ToSmallString(false), nil
}

// fwknopKeyText is a key pair for fwknop clients in the shape the Fwknop2
// Android app reads from a QR code: "KEY_BASE64:K HMAC_KEY_BASE64:H",
// fields split on spaces, name and value on the colon (base64 has
// neither).
func fwknopKeyText(enc, mac []byte) string {
	return "KEY_BASE64:" + base64.StdEncoding.EncodeToString(enc) + " HMAC_KEY_BASE64:" + base64.StdEncoding.EncodeToString(mac)
}

// newFwknopKeys makes what `fwknop --key-gen` makes: a 32-byte Rijndael
// key and a 64-byte HMAC-SHA256 key.
func newFwknopKeys() (enc, mac []byte, err error) {
	enc, mac = make([]byte, 32), make([]byte, 64)
	if _, err := io.ReadFull(rand.Reader, enc); err != nil {
		return nil, nil, err
	}
	if _, err := io.ReadFull(rand.Reader, mac); err != nil {
		return nil, nil, err
	}
	return enc, mac, nil
}

// printFwknopKeys prints new fwknop keys as access.conf lines and, with
// qr, as a QR code for Fwknop2.
func printFwknopKeys(w, errw io.Writer, qr bool) error {
	enc, mac, err := newFwknopKeys()
	if err != nil {
		return fmt.Errorf("spa keygen --fwknop: %w", err)
	}
	std := base64.StdEncoding
	fmt.Fprintf(w, "KEY_BASE64              %s\nHMAC_KEY_BASE64         %s\n", std.EncodeToString(enc), std.EncodeToString(mac))
	if !qr {
		return nil
	}
	block, err := qrBlock(fwknopKeyText(enc, mac))
	if err != nil {
		return fmt.Errorf("spa keygen --fwknop: %w", err)
	}
	fmt.Fprint(w, block)
	fmt.Fprintln(errw, "the QR code holds both keys (secret): scan it with Fwknop2's \"QR code\" menu, then clear the screen")
	return nil
}

// moatKeyText is what a QR code for a moat client holds: the lines its key
// files hold, the client's private key (or the shared key) first and then,
// when known, the server's public key line; docs/spa.md "Keys on a phone".
func moatKeyText(private, serverPublic string) string {
	s := strings.TrimSpace(private)
	if serverPublic != "" {
		s += "\n" + strings.TrimSpace(serverPublic)
	}
	return s
}
