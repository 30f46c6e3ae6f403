package knock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ClientDoor is one door in the client file: where and how to knock.
type ClientDoor struct {
	Name     string
	Host     string        // host: optional; a HOST on the command line wins
	Sequence []Step        // sequence: ["tcp/7000", "udp/9000"], as the server's door has it
	Delay    time.Duration // delay: optional pause between knocks, like "200ms"
}

// ClientFile is the knock client's file of doors:
//
//	[door.ssh]
//	host     = "server.example.org"
//	sequence = ["tcp/7000", "tcp/8000", "udp/9000"]
//	delay    = "200ms"
type ClientFile struct {
	Path  string
	Doors map[string]ClientDoor
}

// DefaultClientFile is where `moat knock --door` looks without --file:
// $XDG_CONFIG_HOME/moat/knock.toml, else ~/.config/moat/knock.toml.
func DefaultClientFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the knock file: %w; give one with --file", err)
	}
	return filepath.Join(dir, "moat", "knock.toml"), nil
}

// LoadClientFile reads and checks the client file at path.
func LoadClientFile(path string) (*ClientFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("knock file %s does not exist: create it with a [door.NAME] table (see docs/knock.md), or give one with --file", path)
		}
		return nil, fmt.Errorf("read knock file: %w", err)
	}
	return ParseClientFile(data, path)
}

// ParseClientFile decodes a client file; path names it in errors.
func ParseClientFile(data []byte, path string) (*ClientFile, error) {
	var raw struct {
		Door map[string]struct {
			Host     *string  `toml:"host"`
			Sequence []string `toml:"sequence"`
			Delay    *string  `toml:"delay"`
		} `toml:"door"`
	}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("%s: unknown key %s: a door takes host, sequence and delay, under [door.NAME]", path, und[0])
	}
	f := &ClientFile{Path: path, Doors: map[string]ClientDoor{}}
	for name, rd := range raw.Door {
		where := fmt.Sprintf("%s: door.%s", path, quoteKey(name))
		d := ClientDoor{Name: name}
		if rd.Host != nil {
			d.Host = strings.TrimSpace(*rd.Host)
			if d.Host == "" {
				return nil, fmt.Errorf("%s.host is empty: give a name or address, or leave host out", where)
			}
		}
		if len(rd.Sequence) == 0 {
			return nil, fmt.Errorf("%s.sequence is missing: want the door's knocks, like [\"tcp/7000\", \"udp/9000\"]", where)
		}
		if len(rd.Sequence) > MaxSteps {
			return nil, fmt.Errorf("%s.sequence has %d knocks; a door takes at most %d", where, len(rd.Sequence), MaxSteps)
		}
		for i, s := range rd.Sequence {
			st, err := ParseStep(s)
			if err != nil {
				return nil, fmt.Errorf("%s.sequence[%d]: %w", where, i, err)
			}
			d.Sequence = append(d.Sequence, st)
		}
		if rd.Delay != nil {
			dl, err := time.ParseDuration(*rd.Delay)
			if err != nil || dl < 0 {
				return nil, fmt.Errorf("%s.delay %q: want a duration like \"200ms\"", where, *rd.Delay)
			}
			d.Delay = dl
		}
		f.Doors[name] = d
	}
	return f, nil
}

// Door returns the named door, or an error that lists the doors there are.
func (f *ClientFile) Door(name string) (ClientDoor, error) {
	if d, ok := f.Doors[name]; ok {
		return d, nil
	}
	names := make([]string, 0, len(f.Doors))
	for n := range f.Doors {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ClientDoor{}, fmt.Errorf("door %q is not in %s, which has no doors: add a [door.%s] table", name, f.Path, quoteKey(name))
	}
	return ClientDoor{}, fmt.Errorf("door %q is not in %s; it has %s", name, f.Path, strings.Join(names, ", "))
}

// quoteKey writes a TOML key bare when it can be, else quoted.
func quoteKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return QuoteTOML(k)
		}
	}
	return k
}
