#!/usr/bin/env bash
# SPA under a flood of random datagrams at the SPA port (issue 13), moat
# beside fwknopd: moat's own client (`moat spa send`), then the real fwknop
# client (a [[spa.fwknop]] entry), ask moat for tcp/2222 twenty times per
# row, and moat's client in fwknop's format (`moat spa send --fwknop`) asks
# the real fwknopd (UDP server mode, its iptables-nft rules), while
# bench/knock/knockbench floods udp/62201 with datagrams of random bytes
# (or of base64 text, which gets past fwknop's cheap checks to its digest
# and HMAC) from forged sources (10.210.0.0/16 or fd00:210::/32, never the
# client's subnet); knockbench times the datagram's arrival (a packet
# socket) to the grant's NEWSETELEM (moat) or fwknopd's NEWRULE (an
# nftables monitor) and checks the port opens. For fwknopd it also counts
# the datagrams its socket took and those the kernel dropped at the full
# socket queue. fwknopd's rows run after moat is stopped (moat's table
# would drop tcp/2222 for fwknopd's grants).
# Same namespaces and method as bench/knock/run.sh (see its README).
# Needs root, fwknop-client, fwknop-server and iptables; about 4 minutes. Usage: bash bench/spa/run.sh [PPS]
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
fwpid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	if [ -n "$fwpid" ]; then kill "$fwpid" 2>/dev/null || true; wait "$fwpid" 2>/dev/null || true; fi
	ip netns del "$S" 2>/dev/null || true
	ip netns del "$C" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ -n "${MOAT_BIN:-}" ]; then cp "$MOAT_BIN" "$work/moat"; else CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat; fi
go build -o "$work/knockbench" ./bench/knock/knockbench

. bench/lib/pair.sh
. bench/lib/grantlatency.sh
pair "$S" "$C" "$ifs" "$ifc" 78

"$work/moat" spa keygen --out "$work/server.key" >"$work/server.pub"
client_pub=$("$work/moat" spa keygen --out "$work/client.key")
fwkeys=$("$work/moat" spa keygen --fwknop)
fwkey=$(awk '$1 == "KEY_BASE64" { print $2 }' <<<"$fwkeys")
fwhmac=$(awk '$1 == "HMAC_KEY_BASE64" { print $2 }' <<<"$fwkeys")
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
[[spa.fwknop]]
name = "fwknop-bench"
source = ["any"]
open_ports = ["tcp/2222"]
key_base64 = "$fwkey"
hmac_key_base64 = "$fwhmac"
max_duration = "5s"
EOT
# A daemon per row, so its own figure (moat status: each datagram's kernel
# timestamp to its grant's commit) is that row's.
start_moat() {
	ip netns exec "$S" "$work/moat" --config "$work/moat.toml" run >>"$work/moat.log" 2>&1 &
	pid=$!
	for _ in $(seq 200); do "$work/moat" --config "$work/moat.toml" status >/dev/null 2>&1 && return; sleep 0.05; done
	echo "moat did not start:" >&2; cat "$work/moat.log" >&2; exit 1
}
stop_moat() {
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
}
own() {
	"$work/moat" --config "$work/moat.toml" status --json | grant_latency_row "$1" spa.grant_latency spa.read_latency >>"$work/own"
}

# probe LABEL FAMILY PPS [KIND [CLIENT [MODE [PID [FLOOD...]]]]]: KIND
# paced or max; CLIENT moat (moat spa send), fwknop (the fwknop client) or
# moat-fwknop (moat spa send --fwknop); MODE moat-spa or fwknopd; FLOOD
# knockbench's flood flags (default: 100 random bytes).
probe() {
	if [ -n "${ROWS:-}" ] && ! grep -Eq -- "$ROWS" <<<"$1"; then return; fi
	local client=10.210.78.2 server=10.210.78.1 src=10.210.0.0/16 ex=10.210.78.0/24
	if [ "$2" = 6 ]; then client=fd00:210:78::2 server=fd00:210:78::1 src=fd00:210::/32 ex=fd00:210:78::/64; fi
	local cmd="$work/moat spa send --key $work/client.key --server-key $work/server.pub --port tcp/2222 --for 5s $server"
	case "${5:-moat}" in
	fwknop) cmd="fwknop --no-rc-file --no-save-args -A tcp/2222 -a $client -D $server --use-hmac --key-base64-rijndael $fwkey --key-base64-hmac $fwhmac" ;;
	moat-fwknop) cmd="$work/moat spa send --fwknop --key-base64-rijndael $fwkey --key-base64-hmac $fwhmac --port tcp/2222 $server" ;;
	esac
	local flood=(-flood-udp 100)
	if [ $# -gt 7 ]; then flood=("${@:8}"); fi
	local daemon=""
	if [ "${6:-moat-spa}" = moat-spa ]; then daemon=1; start_moat; fi
	ip netns exec "$S" "$work/knockbench" probe -label "$1" -mode "${6:-moat-spa}" -pid "${7:-$pid}" -client-ns "$C" -iface "$ifs" \
		-server "$server" -client "$client" -knocks "$knocks" -wait 2s -seq "62201:udp" -knock-cmd "$cmd" \
		-flood-port 62201 "${flood[@]}" -flood-pps "$3" -flood "${4:-paced}" -flood-src "$src" -flood-exclude "$ex" \
		2>>"$work/detail" >>"$work/rows"
	if [ -n "$daemon" ]; then own "$1"; stop_moat; fi
}
b64=(-flood-udp 200 -flood-b64)

: >"$work/rows"
: >"$work/own"
probe "moat | SPA, IPv4" 4 0
probe "moat | SPA, IPv4" 4 "$pps"
probe "moat | SPA, IPv4, flood at the maximum (2 senders)" 4 0 max
if [ "${V6:-1}" != 0 ]; then
	probe "moat | SPA, IPv6" 6 "$pps"
fi
probe "moat | fwknop client (real), IPv4" 4 0 paced fwknop
probe "moat | fwknop client (real), IPv4" 4 "$pps" paced fwknop
probe "moat | fwknop client (real), IPv4, flood at the maximum (2 senders)" 4 0 max fwknop
probe "moat | fwknop client (real), IPv4, base64 flood" 4 "$pps" paced fwknop moat-spa "" "${b64[@]}"

# fwknopd: moat is stopped after each row (its table goes with it,
# on_exit = "remove"); fwknopd runs in the server namespace with one stanza
# of the same keys; a DROP rule closes tcp/2222 behind the jump fwknopd puts
# first in INPUT.
if [ -z "${ROWS:-}" ] || grep -Eq -- "$ROWS" <<<"fwknopd"; then
	cat >"$work/access.conf" <<EOT
SOURCE ANY
OPEN_PORTS tcp/2222
KEY_BASE64 $fwkey
HMAC_KEY_BASE64 $fwhmac
FW_ACCESS_TIMEOUT 5
EOT
	echo "ENABLE_UDP_SERVER Y;" >"$work/fwknopd.conf"
	chmod 600 "$work/access.conf" "$work/fwknopd.conf"
	ip netns exec "$S" fwknopd -f -U -c "$work/fwknopd.conf" -a "$work/access.conf" -d "$work/digest.cache" \
		-p "$work/fwknopd.pid" -r "$work" >>"$work/fwknopd.log" 2>&1 &
	fwpid=$!
	for _ in $(seq 100); do grep -q "Kicking off UDP server" "$work/fwknopd.log" 2>/dev/null && break; sleep 0.05; done
	ip netns exec "$S" iptables -A INPUT -p tcp --dport 2222 -j DROP
	probe "fwknopd | moat spa send --fwknop, IPv4" 4 0 paced moat-fwknop fwknopd "$fwpid"
	probe "fwknopd | moat spa send --fwknop, IPv4" 4 "$pps" paced moat-fwknop fwknopd "$fwpid"
	probe "fwknopd | moat spa send --fwknop, IPv4, base64 flood" 4 "$pps" paced moat-fwknop fwknopd "$fwpid" "${b64[@]}"
	probe "fwknopd | moat spa send --fwknop, IPv4, base64 flood at the maximum (2 senders)" 4 0 max moat-fwknop fwknopd "$fwpid" "${b64[@]}"
fi

echo "| tool | mode | flood at the server (datagrams/s) | opened | datagram to grant, p50 / p99 | RSS during the run (peak since start) | CPU, % of one core |"
echo "|---|---|---|---|---|---|---|"
cat "$work/rows"
if [ -s "$work/own" ]; then
	echo
	echo "moat's own figure (moat status: each datagram's kernel timestamp to its grant's commit):"
	echo
	echo "| tool | mode | grants timed | p50 / p90 / p99 / max | of which before moat read the packet: p50 / p90 / p99 / max |"
	echo "|---|---|---|---|---|"
	cat "$work/own"
fi
echo
echo "Per request (stderr of knockbench probe):"
sed 's/^/    /' "$work/detail"
