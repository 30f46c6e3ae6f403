#!/usr/bin/env bash
# setup.sh prepares a Debian 12 machine, as root, for moat's test suite:
# the tools the integration tests drive, and Go. It is idempotent: on a
# machine that has everything it changes nothing and takes a second.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "setup.sh: needs root (apt-get install, ssh host keys): run it with sudo" >&2
	exit 1
fi

# nftables/iproute2/conntrack: the firewall and the test namespaces;
# openssh, nmap, hping3: real traffic against the tests' hosts; knockd,
# sshguard, fail2ban: the reference tools moat replaces, for side-by-side
# tests and benchmarks; rsyslog: a syslog-fed auth.log, for the login
# guard's forgery tests; sudo: the lockout guard must see the SSH session
# through sudo's env_reset; gcc and libc6-dev: `go test -race` needs cgo;
# systemd: a real systemd-journald and journalctl for the journal source's
# test (run without systemd as PID 1), and systemd-analyze for the unit;
# prometheus: a real server scrapes moat's metrics in a test, and promtool
# checks them; fwknop-client: SPA packets from the real fwknop client for
# the fwknop decoder's tests; man-db and groff-base, lintian: the man pages
# and the Debian package are checked (internal/ship); chromium: the live
# page is tested in a real headless browser (internal/browsertest);
# fwknop-server (and the iptables it drives): `moat spa send --fwknop`
# opens a port on the real fwknopd, and bench/spa times fwknopd beside
# moat; nginx-light, dovecot-imapd and curl: a real nginx (basic auth) and
# dovecot (IMAP) whose fail2ban jails, imported, ban on their own ports
# only.
packages=(
	nftables iproute2 openssh-server openssh-client nmap hping3 knockd
	sshguard fail2ban conntrack procps iputils-ping ca-certificates gcc libc6-dev sudo rsyslog
	systemd prometheus fwknop-client man-db groff-base lintian
	chromium fwknop-server iptables nginx-light dovecot-imapd curl
)

# --go-only: just what building and running moat needs (scripts/run.sh).
if [[ ${1:-} == --go-only ]]; then
	packages=(ca-certificates)
fi

missing=()
for p in "${packages[@]}"; do
	if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
		missing+=("$p")
	fi
done

# policy-rc.d exiting 101 tells invoke-rc.d and deb-systemd-invoke not to
# start services from postinst: sshd, fail2ban, sshguard and knockd
# running on the host would change the firewall and the logs under test.
# Only a policy we created ourselves is removed again.
policy=/usr/sbin/policy-rc.d
own_policy=0
remove_policy() {
	if [[ $own_policy -eq 1 ]]; then
		rm -f "$policy"
	fi
}
trap remove_policy EXIT

apt_install() {
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=1
	fi
	if [[ -z ${apt_updated:-} ]]; then
		apt-get update -q
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if ((${#missing[@]} > 0)); then
	echo "setup.sh: installing ${missing[*]}"
	apt_install "${missing[@]}"
fi

# sshd -T and -t refuse to run without host keys and the privilege
# separation directory, and /run is emptied at boot.
ssh-keygen -A >/dev/null
mkdir -p /run/sshd
chmod 755 /run/sshd

# Go: the machine image ships it at /usr/local/go. If it is missing, fetch
# the toolchain go.mod asks for as the golang.org/toolchain module, with
# Debian's older Go as a bootstrap. That module is how the go command
# itself downloads toolchains, through the configured module proxy.
if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
	want=$(awk '$1 == "toolchain" { sub(/^go/, "", $2); print $2; exit }' go.mod)
	if [[ -z $want ]]; then
		want=$(awk '$1 == "go" { print $2; exit }' go.mod)
	fi
	# A "go 1.N" line without a patch number means the first release.
	if [[ $want =~ ^[0-9]+\.[0-9]+$ ]]; then
		want=$want.0
	fi
	case $(dpkg --print-architecture) in
	amd64) arch=amd64 ;;
	arm64) arch=arm64 ;;
	*)
		echo "setup.sh: no Go for $(dpkg --print-architecture): install Go $want at /usr/local/go" >&2
		exit 1
		;;
	esac
	echo "setup.sh: installing Go $want at /usr/local/go"
	apt_install golang-1.19-go
	boot=/usr/lib/go-1.19/bin/go
	tmp=$(mktemp -d)
	dir=$(cd "$tmp" && env -u GOROOT GOPATH="$tmp/gopath" GOFLAGS= GO111MODULE=on \
		"$boot" mod download -json "golang.org/toolchain@v0.0.1-go$want.linux-$arch" |
		awk -F'"' '$2 == "Dir" { print $4 }') || dir=
	if [[ -z $dir || ! -f $dir/bin/go ]]; then
		echo "setup.sh: could not download Go $want: install it at /usr/local/go" >&2
		exit 1
	fi
	rm -rf /usr/local/go.new
	cp -r "$dir" /usr/local/go.new
	# The module cache is read-only and zips carry no modes.
	chmod -R u+w /usr/local/go.new
	chmod 755 /usr/local/go.new/bin/* /usr/local/go.new/pkg/tool/*/*
	mv /usr/local/go.new /usr/local/go
	chmod -R u+w "$tmp"
	rm -rf "$tmp"
	/usr/local/go/bin/go version
fi

# nats-server >= 2.11 for the fleet's integration tests and benchmark
# (internal/e2e/fleet_test.go, bench/fleet): Debian 12's nats-server is 2.9,
# which silently ignores per-key TTL, and moat refuses it. Built once from
# the module proxy into a cache directory (about a minute cold).
nats_version=v2.15.3
nats_bin=/var/cache/moat-bin/nats-server
if [[ ! -x $nats_bin ]] || [[ $("$nats_bin" --version 2>/dev/null) != "nats-server: $nats_version" ]]; then
	echo "setup.sh: building nats-server $nats_version into $(dirname "$nats_bin")"
	mkdir -p "$(dirname "$nats_bin")"
	export PATH="$PATH:/usr/local/go/bin"
	GOBIN=$(dirname "$nats_bin") CGO_ENABLED=0 go install "github.com/nats-io/nats-server/v2@$nats_version"
fi
