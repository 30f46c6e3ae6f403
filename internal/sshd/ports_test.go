package sshd

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseListenPorts(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want []uint16
	}{
		{"debian default", "port 22\naddressfamily any\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\n", []uint16{22}},
		{"several ports", "port 2222\nport 22\nlistenaddress [::]:2222\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:2222\nlistenaddress 0.0.0.0:22\n", []uint16{22, 2222}},
		// sshd listens only where listenaddress says, whatever port says.
		{"listen address with its own port", "port 22\nport 2200\nlistenaddress 127.0.0.1:2222\nlistenaddress [::1]:22\nlistenaddress [::1]:2200\n", []uint16{22, 2200, 2222}},
		{"listen address overrides port", "port 22\nlistenaddress 192.0.2.1:2222\n", []uint16{2222}},
		{"rdomain", "port 22\nlistenaddress 192.0.2.1:22 rdomain 5\n", []uint16{22}},
		{"ports only", "port 22\nport 443\n", []uint16{22, 443}},
		{"crlf and blanks", "  port 22\r\n\r\nPort\t23\n", []uint16{22, 23}},
		{"hostname", "listenaddress host.example:2022\n", []uint16{2022}},
		{"bare v6 has no port", "port 22\nlistenaddress ::1\n", []uint16{22}},
		{"bad values", "port 0\nport 65536\nport x\nport\nlistenaddress [::1]\nlistenaddress :22\nlistenaddress [::]:\nportx 5\n", nil},
		{"lookalike keys", "gatewayports no\npermitlisten any\nport 22\n", []uint16{22}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseListenPorts([]byte(tt.out)); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestListenPorts runs the real sshd when it can; sshd -T fails without host
// keys or /run/sshd, and then the error must say why.
func TestListenPorts(t *testing.T) {
	ports, err := ListenPorts(context.Background())
	if err != nil {
		t.Skipf("sshd -T unavailable here: %v", err)
	}
	if len(ports) == 0 || !slices.IsSorted(ports) {
		t.Errorf("ports %v", ports)
	}
}

// fakeSSHD puts an sshd script first in PATH.
func fakeSSHD(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	body := "#!/bin/sh\n[ \"$1\" = -T ] || { echo \"want -T, got $*\" >&2; exit 1; }\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(dir, "sshd"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
}

func TestListenPortsFake(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		want    []uint16
		wantErr string
	}{
		{"ok", "printf 'port 22\\nlistenaddress 0.0.0.0:2222\\nlistenaddress [::]:2222\\n'", []uint16{2222}, ""},
		{"fails", "echo 'Missing privilege separation directory: /run/sshd' >&2; echo second >&2; exit 255",
			nil, "sshd -T: exit status 255: Missing privilege separation directory: /run/sshd"},
		{"fails silently", "exit 1", nil, "sshd -T: exit status 1"},
		{"no ports", "echo 'permitrootlogin no'", nil, "sshd -T printed no port or listenaddress line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeSSHD(t, tt.script)
			got, err := ListenPorts(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "second") {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseListenPorts(f *testing.F) {
	f.Add([]byte("port 22\nlistenaddress [::]:22\nlistenaddress 0.0.0.0:22\n"))
	f.Add([]byte("port 22\nlistenaddress 192.0.2.1:2222 rdomain 1\n"))
	f.Add([]byte("listenaddress [::1\nport 99999\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		ports := ParseListenPorts(out)
		for i, p := range ports {
			if p == 0 || i > 0 && ports[i-1] >= p {
				t.Fatalf("not sorted, unique and non-zero: %v", ports)
			}
		}
	})
}
