package ship

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	debOnce sync.Once
	debPath string
	debErr  error
)

// buildDeb runs scripts/package.sh once for the package's tests, with
// gzip rather than xz (xz takes most of a minute on a busy machine; the
// content is the same, and lintian rejects no compression at all).
func buildDeb(t *testing.T) string {
	t.Helper()
	need(t, "dpkg-deb")
	debOnce.Do(func() { debPath, debErr = packageSh(t) })
	if debErr != nil {
		t.Fatal(debErr)
	}
	return debPath
}

func packageSh(t *testing.T) (string, error) {
	dir, err := os.MkdirTemp("", "moat-deb-")
	if err != nil {
		return "", err
	}
	cleanup = append(cleanup, dir)
	goDir := filepath.Dir(goTool(t))
	cmd := exec.Command("bash", "scripts/package.sh", "--out", dir)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "DEB_COMPRESSION=gzip", "PATH="+goDir+":"+os.Getenv("PATH"))
	var out, errw bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errw
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/package.sh: %w\n%s", err, errw.String())
	}
	deb := strings.TrimSpace(out.String())
	if !strings.HasSuffix(deb, ".deb") {
		return "", fmt.Errorf("scripts/package.sh printed %q, want the .deb's path", deb)
	}
	return deb, nil
}

// installScript runs inside a chroot whose root is an overlay over this
// machine's / (writes go to a tmpfs and vanish), in a new network
// namespace: dpkg's database, /etc, /usr and the firewall of the real
// machine are never touched, and nothing can lock anyone out. There is no
// systemd in there, so postinst enables the unit and does not start it,
// as on a machine installed from a rescue shell.
const installScript = `
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
dpkg -i /tmp/moat.deb > /tmp/install.log 2>&1 || { cat /tmp/install.log >&2; fail "dpkg -i"; }
cat /tmp/install.log
for f in /usr/sbin/moat /usr/libexec/moat/moat-fleet-server /lib/systemd/system/moat.service /etc/moat/moat.toml \
	/usr/share/man/man8/moat.8.gz /usr/share/man/man8/moat-firewall-off.8.gz \
	/usr/share/bash-completion/completions/moat /usr/share/zsh/vendor-completions/_moat \
	/usr/share/fish/vendor_completions.d/moat.fish /usr/share/doc/moat/copyright /usr/share/doc/moat/README.md; do
	[ -s "$f" ] || fail "$f is missing"
done
dpkg-query -W -f='${Conffiles}\n' moat | grep -q '/etc/moat/moat.toml' || fail "/etc/moat/moat.toml is not a conffile"
moat config default | cmp -s - /etc/moat/moat.toml || fail "/etc/moat/moat.toml is not the embedded default"
moat --version
moat config check || fail "moat config check"
if command -v deb-systemd-helper >/dev/null; then
	[ -L /etc/systemd/system/multi-user.target.wants/moat.service ] || fail "postinst did not enable moat.service"
fi
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify /lib/systemd/system/moat.service || fail "systemd-analyze verify with the package installed"
	systemd-analyze security --offline=true --no-pager /lib/systemd/system/moat.service | tail -1
fi
MANPAGER=cat MANWIDTH=80 man -l /usr/share/man/man8/moat.8.gz > /dev/null || fail "man -l moat.8.gz"

# remove: the table a stopped moat leaves (on_exit = "keep") stays, and so
# does the config.
nft add table inet moat
dpkg -r moat
[ ! -e /usr/sbin/moat ] || fail "dpkg -r left /usr/sbin/moat"
[ -e /etc/moat/moat.toml ] || fail "dpkg -r removed the conffile"
nft list table inet moat > /dev/null || fail "dpkg -r removed table inet moat; on_exit = keep says it stays"

# purge: state, config and table go.
mkdir -p /var/lib/moat && touch /var/lib/moat/moat.db
dpkg --purge moat
for f in /etc/moat /var/lib/moat /run/moat /lib/systemd/system/moat.service; do
	[ ! -e "$f" ] || fail "dpkg --purge left $f"
done
if nft list table inet moat > /dev/null 2>&1; then fail "dpkg --purge left table inet moat"; fi
[ ! -e /etc/systemd/system/multi-user.target.wants/moat.service ] || fail "purge left the unit enabled"

# An administrator installing over SSH with a config that would cut the
# session off: the package installs, and moat is not started.
mkdir -p /etc/moat
printf '[firewall]\nopen = ["tcp/443"]\n' > /etc/moat/moat.toml
SSH_CONNECTION='203.0.113.9 50000 10.0.0.1 22' dpkg -i --force-confold /tmp/moat.deb > /tmp/install.log 2>&1 || { cat /tmp/install.log >&2; fail "dpkg -i over a closing config"; }
cat /tmp/install.log
grep -q 'NOT starting moat.service' /tmp/install.log || fail "postinst did not refuse to start moat with a config that cuts off the SSH session"
grep -q 'would cut off the SSH session' /tmp/install.log || fail "postinst did not say why"
dpkg --purge moat > /dev/null
echo "install, remove and purge: ok"
`

func TestDebInstallsAndPurges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing the .deb needs root (in a private mount and network namespace); run as root, as CI does")
	}
	need(t, "unshare", "chroot", "dpkg", "nft")
	deb := buildDeb(t)
	if fi, err := os.Stat(deb); err == nil {
		t.Logf("%s: %d bytes (gzip)", filepath.Base(deb), fi.Size())
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "install.sh")
	if err := os.WriteFile(script, []byte(installScript), 0o755); err != nil {
		t.Fatal(err)
	}
	// The overlay's upper layer is a tmpfs of its own: the kernel refuses
	// an upper directory that lies inside the lower one (/).
	setup := `
set -eu
d=$1 deb=$2 script=$3
mount -t tmpfs tmpfs "$d"
mkdir "$d/upper" "$d/work" "$d/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$d/upper,workdir=$d/work" "$d/root"
for m in proc sys dev; do mount --rbind "/$m" "$d/root/$m"; done
# A fresh /run: no /run/systemd/system, so maintainer scripts see no systemd.
mount -t tmpfs tmpfs "$d/root/run"
mkdir -p "$d/root/run/sshd" "$d/root/run/lock"
cp "$deb" "$d/root/tmp/moat.deb"
cp "$script" "$d/root/tmp/install.sh"
exec chroot "$d/root" /bin/sh /tmp/install.sh
`
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", setup, "sh", mnt, deb, script)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		if bytes.Contains(out, []byte("overlay")) && !bytes.Contains(out, []byte("FAIL")) {
			t.Skipf("no overlay file system here to install into without touching this machine: %v", err)
		}
		t.Fatalf("install test: %v", err)
	}
	if !bytes.Contains(out, []byte("install, remove and purge: ok")) {
		t.Fatal("the install script did not finish")
	}
}

// TestDebLintian runs lintian on the package: no errors, except those
// overridden with a reason in the package itself.
func TestDebLintian(t *testing.T) {
	need(t, "lintian")
	deb := buildDeb(t)
	out, _, _ := run(t, "lintian", "--tag-display-limit", "0", deb)
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "E: ") {
			errs = append(errs, l)
		}
	}
	t.Logf("lintian:\n%s", out)
	if len(errs) > 0 {
		t.Fatalf("lintian errors:\n%s", strings.Join(errs, "\n"))
	}
}
