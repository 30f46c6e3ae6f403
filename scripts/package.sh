#!/usr/bin/env bash
# package.sh builds the Debian package: dist/moat_<version>_<arch>.deb
# (or --out DIR) with /usr/sbin/moat (static, CGO_ENABLED=0), the systemd
# unit, /etc/moat/moat.toml (the embedded default, a conffile), man pages
# and bash/zsh/fish completions generated from the command tree, the docs,
# and the maintainer scripts in dist/debian. It needs Go and dpkg-deb
# only, and no root: dpkg-deb --root-owner-group makes every file root's.
#
# VERSION=1.2.3 sets the version; by default it is 0.0.0~git<date>.<commit>
# (or the tag vX.Y.Z on HEAD). SOURCE_DATE_EPOCH defaults to the commit's
# time, so two builds of one commit give the same package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"

out=dist
if [[ ${1:-} == --out ]]; then
	out=$2
fi

if [[ -z ${VERSION:-} ]]; then
	if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
		VERSION=${tag#v}
	elif git rev-parse --git-dir >/dev/null 2>&1; then
		VERSION=0.0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=7 HEAD)
	else
		VERSION=0.0.0~dev
	fi
fi
if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
arch=${ARCH:-$(go env GOARCH)}
deb="$out/moat_${VERSION}_${arch}.deb"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

echo "package.sh: building moat $VERSION for $arch" >&2
mkdir -p "$root/usr/sbin"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath \
	-ldflags "-s -w -X github.com/moat-fw/moat/internal/cli.Version=$VERSION" \
	-o "$root/usr/sbin/moat" ./cmd/moat
# The embedded NATS server of `moat fleet server`, a binary of its own so
# that the daemon does not carry its code; moat runs it from libexec.
mkdir -p "$root/usr/libexec/moat"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "-s -w" \
	-o "$root/usr/libexec/moat/moat-fleet-server" ./cmd/moat-fleet-server
# The docs are generated from the command tree by cmd/moat-gendocs, built
# for this machine whatever the package's architecture (the man page
# generator is not in moat's own binary).
CGO_ENABLED=0 go run -trimpath ./cmd/moat-gendocs "$tmp/gen"
install -d "$root/usr/share/man/man8"
for f in "$tmp"/gen/man8/*.8; do
	gzip -9n <"$f" >"$root/usr/share/man/man8/$(basename "$f").gz"
done
install -D -m 644 "$tmp/gen/completion/moat.bash" "$root/usr/share/bash-completion/completions/moat"
install -D -m 644 "$tmp/gen/completion/_moat" "$root/usr/share/zsh/vendor-completions/_moat"
install -D -m 644 "$tmp/gen/completion/moat.fish" "$root/usr/share/fish/vendor_completions.d/moat.fish"

install -D -m 644 dist/moat.service "$root/lib/systemd/system/moat.service"
install -d -m 755 "$root/etc/moat"
go run -trimpath ./cmd/moat config default >"$root/etc/moat/moat.toml"
chmod 644 "$root/etc/moat/moat.toml"

doc=$root/usr/share/doc/moat
install -d "$doc"
install -m 644 README.md "$doc/"
for f in docs/*.md; do install -m 644 "$f" "$doc/"; done
install -D -m 644 examples/moat.toml "$doc/examples/moat.toml"
# Debian policy 12.5 and 12.7: a copyright file, and a changelog.
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: moat
Source: https://github.com/moat-fw/moat

Files: *
Copyright: 2026 the moat authors
License: UNSPECIFIED
 The source tree carries no license file yet; until it does, this
 package is for the project's own machines.
COPYRIGHT
cat >"$tmp/changelog" <<CHANGELOG
moat ($VERSION) unstable; urgency=medium

  * Built from $(git rev-parse HEAD 2>/dev/null || echo "an unversioned tree").

 -- moat developers <moat-fw@users.noreply.github.com>  $(date -R -u -d "@$SOURCE_DATE_EPOCH")
CHANGELOG
# A native package (no Debian revision): changelog.gz, not changelog.Debian.gz.
gzip -9n <"$tmp/changelog" >"$doc/changelog.gz"
# lintian's "statically-linked-binary" is an error for C programs, which
# should share libc's security fixes. moat is Go, built with
# CGO_ENABLED=0 on purpose: one binary with no run-time dependencies, that
# works in a rescue shell and a minimal container alike. Go programs are
# rebuilt for Go's own fixes either way.
install -d "$root/usr/share/lintian/overrides"
cat >"$root/usr/share/lintian/overrides/moat" <<OVERRIDES
# Go, CGO_ENABLED=0 by design: see scripts/package.sh.
moat: statically-linked-binary [usr/sbin/moat]
moat: statically-linked-binary [usr/libexec/moat/moat-fleet-server]
OVERRIDES
chmod 644 "$root/usr/share/lintian/overrides/moat"

install -d "$root/DEBIAN"
install -m 755 dist/debian/postinst dist/debian/prerm dist/debian/postrm "$root/DEBIAN/"
echo /etc/moat/moat.toml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: moat
Version: $VERSION
Architecture: $arch
Maintainer: moat developers <moat-fw@users.noreply.github.com>
Installed-Size: $size
Depends: nftables
Recommends: openssh-server
Section: net
Priority: optional
Homepage: https://github.com/moat-fw/moat
Description: default-deny firewall with bans, knock doors, scan and login guards
 moat makes a Linux host invisible and self-defending: it owns one nftables
 table (inet moat) with a default-deny policy, keeps bans with kernel
 timeouts across restarts, opens port-knocking doors, and bans port scanners
 and SSH password guessers. It never cuts off the SSH session it runs in.
 .
 The service starts on installation only when \`moat config check\` passes
 for /etc/moat/moat.toml, including the administrator's SSH session.
CONTROL

# Every file's time is SOURCE_DATE_EPOCH, for reproducible packages.
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out"
# DEB_COMPRESSION=none speeds up the tests' builds; releases use xz.
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "package.sh: wrote $deb ($(du -h "$deb" | cut -f1))" >&2
echo "$deb"
