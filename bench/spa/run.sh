#!/usr/bin/env bash
# SPA under a flood of random datagrams at the SPA port (issue 13): moat's
# own client (`moat spa send`) asks for tcp/2222 twenty times per row while
# bench/knock/knockbench floods udp/62201 with datagrams of random bytes
# from forged sources (10.210.0.0/16 or fd00:210::/32, never the client's
# subnet); knockbench times the datagram's arrival (a packet socket) to the
# grant's NEWSETELEM (an nftables monitor) and checks the port opens.
# Same namespaces and method as bench/knock/run.sh (see its README).
# Needs root; about 2 minutes. Usage: bash bench/spa/run.sh [PPS]
# (default 60000). Environment: KNOCKS (default 20), V6=0 skips IPv6,
# MOAT_BIN uses that moat binary instead of building the working tree,
# ROWS=REGEX runs only the rows whose label matches.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/spa/run.sh: needs root (network namespaces, nftables, raw sockets)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
pps=${1:-60000}
knocks=${KNOCKS:-20}
work=$(mktemp -d /tmp/moat-bench-spa.XXXXXX)
S="moat-t-sbs$$"
C="moat-t-sbc$$"
ifs="mtsb$$s"
ifc="mtsb$$c"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$S" 2>/dev/null || true
	ip netns del "$C" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${MOAT_BIN:-}" ]; then cp "$MOAT_BIN" "$work/moat"; else CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat; fi
go build -o "$work/knockbench" ./bench/knock/knockbench

. bench/lib/pair.sh
pair "$S" "$C" "$ifs" "$ifc" 78

"$work/moat" spa keygen --out "$work/server.key" >"$work/server.pub"
client_pub=$("$work/moat" spa keygen --out "$work/client.key")
cat >"$work/moat.toml" <<EOT
[daemon]
state_dir = "$work/state"
socket = "$work/moat.sock"
on_exit = "remove"
[firewall]
open = []
[login]
enabled = false
[spa]
key_file = "$work/server.key"
[[spa.client]]
name = "bench"
key = "$client_pub"
ports = ["tcp/2222"]
max_duration = "5s"
EOT
ip netns exec "$S" "$work/moat" --config "$work/moat.toml" run >>"$work/moat.log" 2>&1 &
pid=$!
for _ in $(seq 200); do "$work/moat" --config "$work/moat.toml" status >/dev/null 2>&1 && break; sleep 0.05; done

probe() { # $1 label, $2 family (4|6), $3 pps, $4 flood kind (paced, max)
	if [ -n "${ROWS:-}" ] && ! grep -Eq -- "$ROWS" <<<"$1"; then return; fi
	local client=10.210.78.2 server=10.210.78.1 src=10.210.0.0/16 ex=10.210.78.0/24
	if [ "$2" = 6 ]; then client=fd00:210:78::2 server=fd00:210:78::1 src=fd00:210::/32 ex=fd00:210:78::/64; fi
	ip netns exec "$S" "$work/knockbench" probe -label "$1" -mode moat-spa -pid "$pid" -client-ns "$C" -iface "$ifs" \
		-server "$server" -client "$client" -knocks "$knocks" -wait 2s -seq "62201:udp" \
		-knock-cmd "$work/moat spa send --key $work/client.key --server-key $work/server.pub --port tcp/2222 --for 5s $server" \
		-flood-port 62201 -flood-udp 100 -flood-pps "$3" -flood "${4:-paced}" -flood-src "$src" -flood-exclude "$ex" \
		2>>"$work/detail" >>"$work/rows"
}

: >"$work/rows"
probe "moat | SPA, IPv4" 4 0
probe "moat | SPA, IPv4" 4 "$pps"
probe "moat | SPA, IPv4, flood at the maximum (2 senders)" 4 0 max
if [ "${V6:-1}" != 0 ]; then
	probe "moat | SPA, IPv6" 6 "$pps"
fi

echo "| tool | mode | flood at the server (datagrams/s) | opened | datagram to grant, p50 / p99 | RSS during the run (peak since start) | CPU, % of one core |"
echo "|---|---|---|---|---|---|---|"
cat "$work/rows"
echo
echo "Per request (stderr of knockbench probe):"
sed 's/^/    /' "$work/detail"
