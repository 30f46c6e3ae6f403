#!/usr/bin/env bash
# Fresh checkout to a running, verified moat, as the README's quick start
# does it, timed: a clone of this repository with empty Go module and
# build caches (a fresh machine with Go: every module comes from the
# proxy, everything compiles), then `bash scripts/run.sh` until `moat
# status` answers and `moat config check` passes; then, again from empty
# caches, `bash scripts/package.sh` (the .deb). The build runs as
# scripts/run.sh runs it (it needs the module proxy); moat runs in a throwaway
# network namespace (moat-t-inst<pid>) on the embedded default config with
# its state and socket moved into a temporary directory, so nothing on
# this machine changes. Needs root and network access to the Go module
# proxy. Usage: bash bench/install/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/install/run.sh: needs root (a network namespace)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
work=$(mktemp -d /tmp/moat-bench-install.XXXXXX)
ns="moat-t-inst$$"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$ns" 2>/dev/null || true
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
git clone -q . "$work/src"
ip netns add "$ns"
ip -n "$ns" link set lo up

# The embedded default config, with state and socket in $work.
go run ./cmd/moat config default | sed -e "s|^state_dir = .*|state_dir = \"$work/state\"|" -e "s|^socket = .*|socket = \"$work/moat.sock\"|" >"$work/moat.toml"
grep -q "^state_dir = \"$work/state\"" "$work/moat.toml" || { echo "bench/install/run.sh: could not move state_dir" >&2; exit 1; }

fresh() { # empty caches for the next step
	export GOMODCACHE="$work/gomod.$1" GOCACHE="$work/gocache.$1" GOFLAGS=-modcacherw
}

fresh run
# scripts/run.sh's steps, with moat started in the namespace: the build
# must reach the module proxy, which the namespace cannot.
t0=$(date +%s.%N)
(cd "$work/src" && bash scripts/setup.sh --go-only >/dev/null && CGO_ENABLED=0 go build -trimpath -o moat ./cmd/moat) >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
tb=$(date +%s.%N)
ip netns exec "$ns" "$work/src/moat" run --config "$work/moat.toml" >"$work/run.log" 2>&1 &
pid=$!
until "$work/src/moat" --config "$work/moat.toml" status >/dev/null 2>&1; do
	if ! kill -0 "$pid" 2>/dev/null; then echo "moat did not start:" >&2; cat "$work/run.log" >&2; exit 1; fi
	sleep 0.1
done
t1=$(date +%s.%N)
"$work/src/moat" --config "$work/moat.toml" config check >/dev/null
t2=$(date +%s.%N)
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

fresh pkg
t3=$(date +%s.%N)
(cd "$work/src" && DEB_COMPRESSION=${DEB_COMPRESSION:-xz} bash scripts/package.sh --out "$work/dist" >"$work/pkg.log" 2>&1)
t4=$(date +%s.%N)

printf '| step | seconds |\n|---|---|\n'
printf '| fresh clone, empty Go caches: scripts/run.sh'"'"'s setup and build (modules from the proxy, everything compiled) | %.1f |\n' "$(echo "$tb - $t0" | bc)"
printf '| `moat run` on the embedded default config until `moat status` answers | %.1f |\n' "$(echo "$t1 - $tb" | bc)"
printf '| `moat config check` | %.1f |\n' "$(echo "$t2 - $t1" | bc)"
printf '| **fresh checkout to a running, verified moat** | **%.1f** |\n' "$(echo "$t2 - $t0" | bc)"
printf '| empty Go caches: `bash scripts/package.sh` (the .deb, xz) | %.1f |\n' "$(echo "$t4 - $t3" | bc)"
ls -l "$work/dist"/*.deb | awk '{print "deb: " $5 " bytes"}'
