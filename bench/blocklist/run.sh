#!/usr/bin/env bash
# Blocklist bench: a 1,000,000-entry list (half IPv4, half IPv6 hosts,
# spaced so none merge) loaded by the real daemon into its kernel sets,
# then refreshed with 1% of it changed.
# Measures: start to the whole list in the kernel (status ranges), the
# daemon's RSS then and its peak (VmHWM), and the refresh: from `moat
# blocklist refresh` to the change in the kernel, with the ranges added and
# removed and the set elements the transaction carried.
# Needs root; about a minute. Usage: bash bench/blocklist/run.sh
# Environment: N (entries, default 1000000), KEEP=1 keeps the run's directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/blocklist/run.sh: needs root" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
n=${N:-1000000}
work=$(mktemp -d /tmp/moat-blocklist.XXXXXX)
ns="moat-t-bl$$"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$ns" 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP
CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat
ip netns add "$ns"
ip -n "$ns" link set lo up

# gen FIRST COUNT: COUNT entries numbered from FIRST, even ones IPv4
# (from 100.64.0.0, every other address), odd ones IPv6 (fd00:210:ff00::/40).
gen() {
	python3 - "$1" "$2" <<'PY'
import ipaddress, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
b4 = int(ipaddress.IPv4Address("100.64.0.0"))
b6 = int(ipaddress.IPv6Address("fd00:210:ff00::"))
out = []
for i in range(first, first + count):
    if i % 2 == 0:
        out.append(str(ipaddress.IPv4Address(b4 + i)))
    else:
        out.append(str(ipaddress.IPv6Address(b6 + 2 * i)))
sys.stdout.write("# generated\n" + "\n".join(out) + "\n")
PY
}
gen 0 "$n" >"$work/list.txt"
cat >"$work/moat.toml" <<EOT
[daemon]
state_dir = "$work/state"
socket = "$work/moat.sock"
on_exit = "remove"
[login]
enabled = false
[[blocklist]]
name = "bench"
source = "$work/list.txt"
refresh = "24h"
EOT
moat() { "$work/moat" --config "$work/moat.toml" "$@"; }
field() { moat status --json | python3 -c "import json,sys; b=json.load(sys.stdin).get('blocklists') or [{}]; print(b[0].get('$1', 0))"; }

t0=$(date +%s.%N)
ip netns exec "$ns" "$work/moat" --config "$work/moat.toml" run >>"$work/log" 2>&1 &
pid=$!
for _ in $(seq 400); do moat status >/dev/null 2>&1 && break; sleep 0.05; done
tsock=$(date +%s.%N)
for _ in $(seq 1200); do [ "$(field ranges)" = "$n" ] && break; sleep 0.05; done
tload=$(date +%s.%N)
[ "$(field ranges)" = "$n" ] || { echo "the list did not load:" >&2; cat "$work/log" >&2; exit 1; }
rss_load=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
sleep 5
rss_steady=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
kernel=$(ip netns exec "$ns" nft list set inet moat bl4_bench | grep -c '[0-9]\.[0-9]' || true)

# 1%: the first n/100 entries leave, as many new ones come.
ch=$((n / 100))
gen "$ch" "$n" >"$work/list.txt"
before=$(field last_attempt)
t1=$(date +%s.%N)
moat blocklist refresh >/dev/null
for _ in $(seq 1200); do [ "$(field last_attempt)" != "$before" ] && [ "$(field last_added)" = "$ch" ] && break; sleep 0.02; done
t2=$(date +%s.%N)
added=$(field last_added) removed=$(field last_removed) sent=$(field last_sent) ranges=$(field ranges)
hwm=$(awk '/VmHWM/{print $2}' "/proc/$pid/status")
rss_after=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
grep 'blocklist updated' "$work/log" >&2 || true
python3 - "$n" "$t0" "$tsock" "$tload" "$t1" "$t2" "$rss_load" "$rss_steady" "$hwm" "$rss_after" "$added" "$removed" "$sent" "$ranges" "$ch" <<'PY'
import sys
a = sys.argv[1:]
n, t0, tsock, tload, t1, t2 = int(a[0]), *map(float, a[1:6])
rss_load, rss_steady, hwm, rss_after = (int(x) / 1024 for x in a[6:10])
added, removed, sent, ranges, ch = map(int, a[10:15])
print("| what | measured |")
print("|---|---|")
print(f"| daemon start to control socket | {tsock - t0:.2f} s |")
print(f"| start to all {n:,} entries in the kernel (status ranges = {n:,}) | {tload - t0:.2f} s |")
print(f"| daemon RSS with the list loaded / 5 s later / peak (VmHWM) | {rss_load:.0f} / {rss_steady:.0f} / {hwm:.0f} MB |")
print(f"| refresh with 1% changed ({ch:,} out, {ch:,} in): `moat blocklist refresh` to the change in the kernel | {t2 - t1:.2f} s |")
print(f"| ranges removed / added by the refresh; set elements in its transaction | {removed:,} / {added:,}; {sent:,} (the whole list would be {2 * n:,}) |")
print(f"| daemon RSS after the refresh | {rss_after:.0f} MB |")
PY
