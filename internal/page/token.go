package page

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the name of the page's token file under state_dir.
const TokenFile = "page.token"

// Token returns the page's token kept in dir, making one the first time:
// 32 random bytes, written readable by root only. The daemon and `moat
// page url` both call it; whichever comes first creates the file.
func Token(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			tok := strings.TrimSpace(string(b))
			if len(tok) < 16 {
				return "", fmt.Errorf("page token %s is too short (%d characters): delete it and a new one is made", path, len(tok))
			}
			return tok, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("page token: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("page token: %w", err)
		}
		var raw [32]byte
		_, _ = rand.Read(raw[:])
		tok := base64.RawURLEncoding.EncodeToString(raw[:])
		// Written aside, then linked into place: link fails if another
		// process made it first (then theirs is read), and nobody ever
		// reads a half-written token.
		f, err := os.CreateTemp(dir, ".page.token-*")
		if err != nil {
			return "", fmt.Errorf("page token: %w", err)
		}
		tmp := f.Name()
		_, werr := f.WriteString(tok + "\n")
		err = errors.Join(werr, f.Chmod(0o600), f.Close())
		if err == nil {
			err = os.Link(tmp, path)
		}
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("page token: %w", err)
		}
		return tok, nil
	}
	return "", fmt.Errorf("page token %s: appeared and vanished while it was made", path)
}

// URL is the address to open: the token rides in the query once, and
// the page moves it into a cookie.
func URL(listen, token string) string {
	return "http://" + listen + "/?token=" + token
}
