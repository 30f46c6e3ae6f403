package cli

import (
	"bytes"
	"strings"
	"testing"

	qrcode "github.com/skip2/go-qrcode"
)

// unblock reads a QR code printed by qrBlock back into its modules (true
// is dark): the inverse of the half-block rendering.
func unblock(t *testing.T, block string) [][]bool {
	t.Helper()
	var bits [][]bool
	for line := range strings.SplitSeq(strings.TrimSuffix(block, "\n"), "\n") {
		var top, bottom []bool
		for _, r := range line {
			switch r { // on a dark terminal a printed block is a light module
			case ' ':
				top, bottom = append(top, true), append(bottom, true)
			case '█':
				top, bottom = append(top, false), append(bottom, false)
			case '▀':
				top, bottom = append(top, false), append(bottom, true)
			case '▄':
				top, bottom = append(top, true), append(bottom, false)
			default:
				t.Fatalf("unexpected rune %q in the QR code", r)
			}
		}
		bits = append(bits, top, bottom)
	}
	return bits
}

// The QR code keygen --fwknop prints holds exactly the keys it prints, in
// the form Fwknop2 reads: fields split on spaces, name:value.
func TestFwknopKeysQR(t *testing.T) {
	var out, errw bytes.Buffer
	if err := printFwknopKeys(&out, &errw, true); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(out.String(), "\n", 3)
	key, mac := strings.Fields(lines[0]), strings.Fields(lines[1])
	if len(key) != 2 || key[0] != "KEY_BASE64" || len(mac) != 2 || mac[0] != "HMAC_KEY_BASE64" {
		t.Fatalf("keys printed as %q", lines[:2])
	}
	text := "KEY_BASE64:" + key[1] + " HMAC_KEY_BASE64:" + mac[1]
	got := map[string]string{}
	for f := range strings.SplitSeq(text, " ") { // Fwknop2's ConfigDetailFragment.onActivityResult
		nv := strings.Split(f, ":")
		got[nv[0]] = nv[1]
	}
	if got["KEY_BASE64"] != key[1] || got["HMAC_KEY_BASE64"] != mac[1] {
		t.Fatalf("Fwknop2 would read %v", got)
	}
	want, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		t.Fatal(err)
	}
	bits, wantBits := unblock(t, lines[2]), want.Bitmap()
	if len(wantBits)%2 == 1 {
		bits = bits[:len(bits)-1] // the last half line's lower half is padding
	}
	if len(bits) != len(wantBits) {
		t.Fatalf("%d rows, want %d", len(bits), len(wantBits))
	}
	for y := range bits {
		for x := range bits[y] {
			if bits[y][x] != wantBits[y][x] {
				t.Fatalf("module (%d,%d) differs: the QR code does not hold the printed keys", x, y)
			}
		}
	}
}
