#!/usr/bin/env bash
# Measures the foundation's bars in a throwaway network namespace and prints
# a Markdown table (bench/README.md holds the last run):
#   - daemon RSS idle, and with 100,000 bans;
#   - time to restore 100,000 bans into the kernel at start;
#   - `moat ban add` (CLI start to element committed in the kernel), p50/p99.
# Needs root. Usage: bash bench/foundation.sh [N_BANS]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/foundation.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
n=${1:-100000}
work=$(mktemp -d /tmp/moat-bench.XXXXXX)
ns="moat-t-bench$$"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat
go build -o "$work/seedstore" ./bench/seedstore
ip netns add "$ns"
ip -n "$ns" link set lo up
cat >"$work/moat.toml" <<EOF
[daemon]
state_dir = "$work/state"
socket = "$work/moat.sock"
log_level = "debug"
[firewall]
open = ["tcp/22"]
EOF
moat() { ip netns exec "$ns" "$work/moat" --config "$work/moat.toml" "$@"; }
rss_mb() { awk '/VmRSS/ { printf "%.1f", $2/1024 }' "/proc/$1/status"; }
start() {
	ip netns exec "$ns" "$work/moat" --config "$work/moat.toml" run >"$work/log" 2>&1 &
	pid=$!
	for _ in $(seq 1200); do moat status >/dev/null 2>&1 && return; sleep 0.05; done
	echo "moat did not start:" >&2; cat "$work/log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start
sleep 2
idle=$(rss_mb "$pid")

# ban add: wall time of the whole CLI call (process start, config, socket,
# store fsync, netlink commit), which returns after the daemon's transaction
# committed the element. The CLI needs only the socket, so it runs outside
# the namespace: `ip netns exec` alone costs milliseconds.
lat="$work/lat"
: >"$lat"
for i in $(seq 1 300); do
	a="10.210.$((200 + i / 250)).$((i % 250 + 1))"
	s=$(date +%s%N)
	"$work/moat" --config "$work/moat.toml" ban add "$a" --for 1h >/dev/null
	e=$(date +%s%N)
	echo $(((e - s) / 1000)) >>"$lat"
done
p50=$(sort -n "$lat" | awk '{ a[NR] = $1 } END { printf "%.1f", a[int(NR * 0.50)] / 1000 }')
p99=$(sort -n "$lat" | awk '{ a[NR] = $1 } END { printf "%.1f", a[int(NR * 0.99)] / 1000 }')
# One in-kernel check that the last ban really is there.
# (Not piped into grep -q: nft dies of SIGPIPE when grep stops reading.)
listing=$(ip netns exec "$ns" nft list set inet moat ban4)
grep -q "$a" <<<"$listing" || { echo "last ban not in the kernel" >&2; exit 1; }
stop

"$work/seedstore" -dir "$work/state" -n "$n" >/dev/null
ip netns exec "$ns" nft flush ruleset
t0=$(date +%s%N)
start
t1=$(date +%s%N)
restore=$(grep -o 'msg="table installed" bans=[0-9]* .*took=[^ ]*' "$work/log" | head -1 | sed 's/.*took=//')
inkernel=$(ip netns exec "$ns" nft -j list set inet moat ban4 | grep -o '"elem"' | wc -l || true)
sleep 2
full=$(rss_mb "$pid")
stop

cat <<EOF
| what | bar | measured |
|---|---|---|
| daemon RSS, idle | < 30 MB | ${idle} MB |
| daemon RSS, ${n} bans | < 100 MB | ${full} MB |
| ${n} bans restored into the kernel (netlink transaction) | < 1 s | ${restore} |
| daemon start to socket answering, ${n} bans (store load, rebuild, install, exec) | | $(((t1 - t0) / 1000000)) ms |
| \`moat ban add\` CLI call to element committed in the kernel, p50 / p99 of 300 | < 10 ms | ${p50} / ${p99} ms |
EOF
