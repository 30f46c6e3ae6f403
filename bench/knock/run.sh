#!/usr/bin/env bash
# Knock doors under a spoofed-source SYN flood at the first knock port
# (issue 3), moat's kernel and daemon modes beside knockd, in one run:
# a server and a client namespace joined by a veth pair; the client sends
# the flood (random sources from the test ranges, never its own subnet) and
# runs knockd's `knock` client 20 times per row; bench/knock/knockbench
# times each knock and prints one Markdown row. Rows: IPv4 without and with
# the flood, then IPv6 floods, whose sources (from fd00:210::/32) outnumber
# a door's max_pending, which IPv4's /16 cannot do: once with the bench's
# door, once with moat's default seq_timeout (10s).
# Needs root; about 3 minutes. Usage: bash bench/knock/run.sh [PPS]
# (default 60000). Environment: KNOCKS (default 20), V6=0 skips the IPv6
# rows, EXTRA=1 adds the experiments behind README.md's findings (1 more
# minute), MOAT_BIN uses that moat binary instead of building the working tree,
# ROWS=REGEX runs only the rows whose label (e.g. "moat | daemon, IPv4")
# matches (an extended grep regex).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/knock/run.sh: needs root (network namespaces, nftables, raw sockets)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
for c in knock knockd nft ip hping3; do
	command -v "$c" >/dev/null || { echo "bench/knock/run.sh: needs $c (apt-get install knockd nftables iproute2 hping3)" >&2; exit 1; }
done
pps=${1:-60000}
knocks=${KNOCKS:-20}
work=$(mktemp -d /tmp/moat-bench-knock.XXXXXX)
S="moat-t-kbs$$"
C="moat-t-kbc$$"
ifs="mtkb$$s"
ifc="mtkb$$c"
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$S" 2>/dev/null || true
	ip netns del "$C" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# MOAT_BIN: a moat binary built elsewhere (e.g. from a commit while the
# tree is mid-edit); by default the working tree is built.
if [ -n "${MOAT_BIN:-}" ]; then cp "$MOAT_BIN" "$work/moat"; else CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat; fi
go build -o "$work/knockbench" ./bench/knock/knockbench

. bench/lib/pair.sh
. bench/lib/grantlatency.sh
pair "$S" "$C" "$ifs" "$ifc" 77

moat_config() { # $1: extra door keys, $2: seq_timeout (default 5s)
	cat >"$work/moat.toml" <<EOF
[daemon]
state_dir = "$work/state"
socket = "$work/moat.sock"
on_exit = "remove"
[firewall]
open = []
[login]
enabled = false
[[door]]
name = "bench"
sequence = ["tcp/7000", "tcp/7100", "udp/7200"]
seq_timeout = "${2:-5s}"
open = ["tcp/2222"]
open_for = "5s"
$1
EOF
}
start_moat() {
	ip netns exec "$S" "$work/moat" --config "$work/moat.toml" run >>"$work/moat.log" 2>&1 &
	pid=$!
	for _ in $(seq 200); do "$work/moat" --config "$work/moat.toml" status >/dev/null 2>&1 && return; sleep 0.05; done
	echo "moat did not start:" >&2; cat "$work/moat.log" >&2; exit 1
}
kv=$(knockd --version 2>&1 | awk 'NR == 1 { print $2 }')
start_knockd() {
	mkdir -p "$work/grants"
	cat >"$work/knockd.conf" <<EOF
[options]
	LogFile = $work/knockd.log
[bench]
	sequence        = 7000:tcp,7100:tcp,7200:udp
	seq_timeout     = 5
	tcpflags        = syn
	start_command   = /bin/touch $work/grants/opened-%IP%
	start_command_6 = /bin/touch $work/grants/opened-%IP%
EOF
	# The same drop rules a knockd host would have, so the kernel does
	# not answer the flood and the comparison is about the knock daemons.
	ip netns exec "$S" nft -f - <<EOF
table inet kbdrop {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport { 7000, 7100, 2222 } drop
		udp dport 7200 drop
	}
}
EOF
	ip netns exec "$S" knockd -i "$ifs" -c "$work/knockd.conf" -p "$work/knockd.pid" >>"$work/knockd.out" 2>&1 &
	pid=$!
	for _ in $(seq 100); do grep -qs "listening" "$work/knockd.log" && return; sleep 0.05; done
	echo "knockd did not start:" >&2; cat "$work/knockd.log" "$work/knockd.out" >&2; exit 1
}
stop() {
	# knockd once ignored SIGTERM after a flood (blocked in its capture)
	# and the run waited on it for an hour: give it 5 s, then SIGKILL.
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true; pid=""
	ip netns exec "$S" nft delete table inet kbdrop 2>/dev/null || true
}
probe() { # $1 label, $2 mode, $3 family (4|6), $4 pps, $5 warm-up (more than seq_timeout), $6 flood kind (paced, max, hping3)
	if [ -n "${ROWS:-}" ] && ! grep -Eq -- "$ROWS" <<<"$1"; then return; fi
	local client=10.210.77.2 server=10.210.77.1 src=10.210.0.0/16 ex=10.210.77.0/24 wait=2s
	if [ "$3" = 6 ]; then client=fd00:210:77::2 server=fd00:210:77::1 src=fd00:210::/32 ex=fd00:210:77::/64; fi
	# A kernel-mode grant exists once the packet is through the ruleset:
	# waiting longer only slows the failures down.
	if [ "$2" = moat-kernel ]; then wait=500ms; fi
	ip netns exec "$S" "$work/knockbench" probe -label "$1" -mode "$2" -pid "$pid" -client-ns "$C" -iface "$ifs" \
		-server "$server" -client "$client" -knocks "$knocks" -wait "$wait" -grant-dir "$work/grants" \
		-flood-pps "$4" -flood-src "$src" -flood-exclude "$ex" -flood-cpus "${FLOOD_CPUS:-}" -flood "${6:-paced}" -warmup "${5:-6s}" 2>>"$work/detail" >>"$work/rows"
}
# own LABEL: the daemon's own figure for the row just run (moat status:
# from each last knock's kernel timestamp to its grant's commit), which a
# fresh daemon per row keeps to that row's knocks.
own() {
	"$work/moat" --config "$work/moat.toml" status --json | grant_latency_row "$1" knock_grant_latency knock_read_latency >>"$work/own"
}
# daemon_row: probe's arguments, against a daemon started for the row.
daemon_row() {
	if [ -n "${ROWS:-}" ] && ! grep -Eq -- "$ROWS" <<<"$1"; then return; fi
	start_moat
	probe "$@"
	own "$1"
	stop
}

: >"$work/rows"
: >"$work/own"
moat_config ""
# Each tool: no flood, the paced flood, then the generator's maximum (two
# unpaced knockbench senders, random sources) and two `hping3 --flood`
# (each from one forged source: see knockbench's floodctl.go).
rows4() { # $1 label, $2 mode
	probe "$1" "$2" 4 0
	probe "$1" "$2" 4 "$pps"
	probe "$1, flood at the maximum (2 senders)" "$2" 4 0 6s max
	probe "$1, 2 hping3 --flood" "$2" 4 0 6s hping3
}
start_moat
rows4 "moat | kernel, IPv4" moat-kernel
stop
moat_config 'start_command = ["/bin/true"]'
daemon_row "moat | daemon, IPv4" moat-daemon 4 0
daemon_row "moat | daemon, IPv4" moat-daemon 4 "$pps"
daemon_row "moat | daemon, IPv4, flood at the maximum (2 senders)" moat-daemon 4 0 6s max
daemon_row "moat | daemon, IPv4, 2 hping3 --flood" moat-daemon 4 0 6s hping3
start_knockd
rows4 "knockd $kv | IPv4" knockd
stop
if [ "${V6:-1}" != 0 ]; then
	# knockd is left out here: it opened nothing under the IPv4 flood
	# already, and each failed knock costs the run the whole wait.
	moat_config ""
	start_moat
	probe "moat | kernel, IPv6" moat-kernel 6 "$pps"
	stop
	moat_config 'start_command = ["/bin/true"]'
	daemon_row "moat | daemon, IPv6" moat-daemon 6 "$pps"
	moat_config "" 10s
	start_moat
	probe "moat | kernel, IPv6, seq_timeout 10s (the default)" moat-kernel 6 "$pps" 11s
	stop
fi

if [ "${EXTRA:-0}" != 0 ]; then
	# The experiments bench/knock/README.md's findings rest on.
	# (a) Daemon mode with the last knock's port logged by its own rule
	# with queue-threshold 1, so that packet flushes NFLOG's batch at once
	# while the flood's port keeps batching (32 packets or 10 ms).
	moat_config 'start_command = ["/bin/true"]'
	start_moat
	h=$(ip netns exec "$S" nft -a list chain inet moat knock | sed -n 's/.*meta nfproto ipv4 meta l4proto .*# handle \([0-9]*\)$/\1/p')
	ip netns exec "$S" nft insert rule inet moat knock handle "$h" meta nfproto ipv4 udp dport 7200 \
		log prefix '"moat:knock"' group 7 snaplen 128 queue-threshold 1 update @knockd_pending4 '{ ip saddr }' counter name '"knock"' drop
	ip netns exec "$S" nft replace rule inet moat knock handle "$h" meta nfproto ipv4 tcp dport '{ 7000, 7100 }' \
		log prefix '"moat:knock"' group 7 snaplen 128 update @knockd_pending4 '{ ip saddr }' counter name '"knock"' drop
	probe "moat | daemon, IPv4, last knock logged with queue-threshold 1" moat-daemon 4 0
	probe "moat | daemon, IPv4, last knock logged with queue-threshold 1" moat-daemon 4 "$pps"
	stop
	# (b) Kernel mode with max_pending below the flood's distinct sources
	# per seq_timeout (60,000/s x 5 s): the /16 can do that too.
	moat_config "max_pending = 16384"
	start_moat
	probe "moat | kernel, IPv4, max_pending 16384" moat-kernel 4 "$pps"
	stop
fi

echo "| tool | mode | flood at the server (SYN/s) | knocks opened | knock to grant, p50 / p99 | RSS during the run (peak since start) | CPU, % of one core |"
echo "|---|---|---|---|---|---|---|"
cat "$work/rows"
if [ -s "$work/own" ]; then
	echo
	echo "Daemon mode, moat's own figure (moat status: each last knock's kernel timestamp to its grant's commit):"
	echo
	echo "| tool | mode | grants timed | p50 / p90 / p99 / max | of which before moat read the packet: p50 / p90 / p99 / max |"
	echo "|---|---|---|---|---|"
	cat "$work/own"
fi
echo
echo "Per knock (stderr of knockbench probe):"
sed 's/^/    /' "$work/detail"
