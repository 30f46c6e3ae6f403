#!/usr/bin/env bash
# The kernel's own share of restoring N host bans, measured without moat:
# nft (the nftables project's own tool) loads one file holding a table with
# two hash sets declared at twice N/2 (as moat declares its host sets, so
# the kernel's hash is sized once) and N/2 IPv4 plus N/2 IPv6 elements with
# timeouts, in one transaction, into an empty network namespace. The
# system time of that nft process is the kernel inserting the elements;
# its user time is nft parsing and encoding the file, which moat does
# itself in far less (bench/README.md, "Bans at a million"). Whatever the
# system time is, no user-space program can restore N bans into this
# kernel faster. Runs RUNS times (default 3), each in a fresh namespace.
# Needs root and nft. Usage: bash bench/scale/kernelfloor.sh [N] (default 1000000)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/scale/kernelfloor.sh: needs root" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin"
n=${1:-1000000}
runs=${RUNS:-3}
half=$((n / 2))
size=1
while [ "$size" -lt $((2 * half)) ]; do size=$((size * 2)); done
work=$(mktemp -d /tmp/moat-kfloor.XXXXXX)
ns="moat-t-kfloor$$"
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
python3 - "$half" "$size" >"$work/rules.nft" <<'EOF'
import sys
half, size = int(sys.argv[1]), int(sys.argv[2])
w = sys.stdout.write
w("table inet floor {\n")
w(f"\tset ban4 {{ type ipv4_addr; size {size}; flags timeout; }}\n")
w(f"\tset ban6 {{ type ipv6_addr; size {size}; flags timeout; }}\n}}\n")
# Elements in chunks of 10,000 per add command: one file, one transaction.
for fam, name in (("4", "ban4"), ("6", "ban6")):
    for start in range(0, half, 10000):
        els = []
        for i in range(start, min(half, start + 10000)):
            if fam == "4":
                els.append(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255} timeout 1h")
            else:
                els.append(f"fd00:210:{(i >> 16) & 0xffff:x}::{i & 0xffff:x} timeout 1h")
        w(f"add element inet floor {name} {{ {', '.join(els)} }}\n")
EOF
echo "| run | elements | wall | nft user (parse, encode) | nft system (the kernel) |"
echo "|---|---|---|---|---|"
for r in $(seq "$runs"); do
	ip netns add "$ns"
	/usr/bin/time -f "%e %U %S" -o "$work/time" ip netns exec "$ns" nft -f "$work/rules.nft"
	read -r wall user sys <"$work/time"
	ip netns del "$ns"
	echo "| $r | $((2 * half)) | ${wall} s | ${user} s | ${sys} s |"
done
