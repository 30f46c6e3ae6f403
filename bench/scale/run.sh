#!/usr/bin/env bash
# Measures issue 16's bars for bans at a million, in throwaway network
# namespaces, and prints Markdown tables (bench/README.md holds the last run):
#   1. restore: N bans (default 1,000,000: half IPv4, half IPv6, one in a
#      thousand a prefix; bench/scale/million) seeded into a store, the
#      kernel emptied (as a reboot does), moat started: the store load and
#      the netlink install as the daemon logs them, start to socket
#      answering, daemon RSS 10 s later (steady) and its peak (VmHWM); then
#      the same after a clean restart (the table replaced in place) and
#      after a kill -9 (the kernel's sets read back to adopt what the store
#      lacks);
#   2. bench/scale/expirystall: 1,000 bans expiring in the same second with
#      N live: the manager's Add timed every 2 ms around it, and every live
#      ban checked in the kernel after.
# Needs root. Usage: bash bench/scale/run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/scale/run.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
n=${1:-1000000}
work=$(mktemp -d /tmp/moat-scale-bench.XXXXXX)
ns="moat-t-scale$$"
ns2="moat-t-scalx$$"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$ns" 2>/dev/null || true
	ip netns del "$ns2" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat
go build -o "$work/seedstore" ./bench/seedstore
go build -o "$work/expirystall" ./bench/scale/expirystall
ip netns add "$ns"
ip -n "$ns" link set lo up
cat >"$work/moat.toml" <<EOT
[daemon]
state_dir = "$work/state"
socket = "$work/moat.sock"
log_level = "debug"
[firewall]
open = ["tcp/22"]
[login]
enabled = false
EOT
moat() { "$work/moat" --config "$work/moat.toml" "$@"; }
kb() { awk -v k="$1" '/^'"$1"':/ { print $2 }' "/proc/$2/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
took() { grep -o "msg=\"$1\" bans=[0-9]* .*took=[^ ]*" "$work/log" | tail -1 | sed 's/.*took=//'; }
start() {
	: >"$work/log"
	t0=$(date +%s%N)
	ip netns exec "$ns" "$work/moat" --config "$work/moat.toml" run >"$work/log" 2>&1 &
	pid=$!
	for _ in $(seq 1200); do moat status >/dev/null 2>&1 && break; sleep 0.05; done
	moat status >/dev/null 2>&1 || { echo "moat did not start:" >&2; cat "$work/log" >&2; exit 1; }
	t1=$(date +%s%N)
	sleep 10
	steady=$(mb "$(kb VmRSS "$pid")")
	peak=$(mb "$(kb VmHWM "$pid")")
	bans=$(moat status --json 2>/dev/null | grep -o '"bans": *[0-9]*' | head -1 | grep -o '[0-9]*$' || true)
	echo "| $1 | ${bans:-?} | $(took "bans loaded from the store") | $(took "table installed") | $(((t1 - t0) / 1000000)) ms | ${steady} MB | ${peak} MB |"
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

seed=$("$work/seedstore" -dir "$work/state" -n "$n" -mixed)
ip netns exec "$ns" nft flush ruleset
echo "Seeded: $seed"
echo
echo "| start | bans | store load | netlink install | start to socket | RSS 10 s later | RSS peak |"
echo "|---|---|---|---|---|---|---|"
start "after a reboot (kernel empty)"
stop
start "after a clean stop (table in the kernel)"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=""
start "after kill -9 (kernel read back)"
stop
echo
echo "1,000 bans expiring in the same second with $n live (bench/scale/expirystall):"
echo
ip netns add "$ns2"
ip netns exec "$ns2" "$work/expirystall" -n "$n" -expiring 1000 | sed 's/^/    /'
