#!/usr/bin/env bash
# Measures issue 16's peer bar for bans at a million: "fail2ban's and
# sshguard's restore times for the largest size each handles in 10
# minutes, on the same run", beside moat restoring the same bans, and
# prints a Markdown table (bench/README.md holds the last run).
#
# For each size N (SIZES, growing), each tool gets the same N host bans
# persisted the way it persists them, a fresh throwaway network namespace
# (moat-t-peer*, so every nftables table it makes is there and dies with
# it), and is started; the time is from its start until the kernel holds
# all N elements in its sets (bench/scale/peerwait: a netlink monitor in
# the namespace counts the elements committed, a set dump confirms):
#   - moat: its store seeded by bench/seedstore -n N (the first 65,000 in
#     10.210.0.0/16, the rest under fd00:210:beef::/48), the kernel empty
#     (as after a reboot); sets ban4/ban6 of table inet moat;
#   - fail2ban (Debian's fail2ban-server, run as `fail2ban-server -xf ...
#     start` with a private copy of /etc/fail2ban, its own socket, pid
#     file, log and sqlite db under a temp dir): jail sshd with banaction
#     nftables-multiport, its db seeded with the same N current bans
#     (bench/scale/peerseed.py), which the jail's start restores ("Restore
#     Ban"); sets addr-set-sshd/addr6-set-sshd of table inet f2b-table;
#   - sshguard (Debian's, its wrapper run in the foreground with a private
#     sshguard.conf): backend sshg-fw-nft-sets, its blacklist file seeded
#     with the same N addresses, which it loads and blocks at start; sets
#     attackers of tables ip/ip6 sshguard.
# A tool that does not get there within TOOL_TIMEOUT, or fails, is not
# tried at larger sizes. The tools are processes this script starts (never
# the system services) and peerwait stops them by process group.
#
# fail2ban and sshguard are bench-only tools: they are not in
# scripts/setup.sh; this script installs them with apt-get if missing
# (with a policy-rc.d that keeps their services from starting).
#
# Environment knobs:
#   SIZES          sizes to try, growing (default "1000 3000 10000 30000
#                  100000 300000 1000000")
#   MAX_N          skip sizes above this (default 1000000)
#   TOOL_TIMEOUT   seconds one tool gets for one size (default 600)
#   DEADLINE       seconds after which no new size is started (default 5400);
#                  the whole run is bounded by DEADLINE plus one size's
#                  three runs (3 x TOOL_TIMEOUT) plus seeding
#   TOOLS          which to run (default "moat fail2ban sshguard")
# Needs root. Usage: bash bench/scale/peers.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/scale/peers.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
sizes=${SIZES:-"1000 3000 10000 30000 100000 300000 1000000"}
max_n=${MAX_N:-1000000}
tool_timeout=${TOOL_TIMEOUT:-600}
deadline=${DEADLINE:-5400}
tools=${TOOLS:-"moat fail2ban sshguard"}
py=/usr/bin/python3 # fail2ban's Python (its modules are there)
work=$(mktemp -d /tmp/moat-peers-bench.XXXXXX)
ns="moat-t-peer$$"
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

need=()
command -v fail2ban-server >/dev/null || need+=(fail2ban)
command -v sshguard >/dev/null || need+=(sshguard)
if [ ${#need[@]} -gt 0 ]; then
	made=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
	[ -n "$made" ] && rm -f /usr/sbin/policy-rc.d
fi
f2bver=$(dpkg-query -W -f '${Version}' fail2ban)
sgver=$(dpkg-query -W -f '${Version}' sshguard)

bin="$work/bin"
CGO_ENABLED=0 go build -o "$bin/moat" ./cmd/moat
go build -o "$bin/seedstore" ./bench/seedstore
go build -o "$bin/peerwait" ./bench/scale/peerwait

fresh_ns() {
	ip netns del "$ns" 2>/dev/null || true
	ip netns add "$ns"
	ip -n "$ns" link set lo up
}
load() { uptime | sed 's/.*load average: //'; }

# Each run_TOOL N prints peerwait's result line.
run_moat() {
	local d="$work/moat-$1"
	mkdir -p "$d"
	"$bin/seedstore" -dir "$d/state" -n "$1" >/dev/null
	cat >"$d/moat.toml" <<EOF
[daemon]
state_dir = "$d/state"
socket = "$d/moat.sock"
log_level = "debug"
[firewall]
open = ["tcp/22"]
[login]
enabled = false
EOF
	fresh_ns
	"$bin/peerwait" -netns "$ns" -n "$1" -timeout "${tool_timeout}s" -log "$d/log" \
		-set inet:moat:ban4 -set inet:moat:ban6 -set inet:moat:bannet4 -set inet:moat:bannet6 \
		-- ip netns exec "$ns" "$bin/moat" --config "$d/moat.toml" run
}

run_fail2ban() {
	local d="$work/fail2ban-$1"
	mkdir -p "$d"
	cp -a /etc/fail2ban "$d/conf"
	rm -f "$d/conf/jail.d/"* "$d/conf/fail2ban.d/"* "$d/conf/"*.local
	cat >"$d/conf/fail2ban.local" <<EOF
[Definition]
loglevel = INFO
logtarget = $d/fail2ban.log
socket = $d/fail2ban.sock
pidfile = $d/fail2ban.pid
dbfile = $d/fail2ban.sqlite3
dbpurgeage = 30d
EOF
	: >"$d/auth.log"
	cat >"$d/conf/jail.local" <<EOF
[sshd]
enabled = true
backend = polling
logpath = $d/auth.log
banaction = nftables-multiport
banaction_allports = nftables-allports
bantime = 1w
findtime = 10m
maxretry = 3
EOF
	"$py" bench/scale/peerseed.py -n "$1" --f2b "$d/fail2ban.sqlite3" 2>/dev/null
	fresh_ns
	"$bin/peerwait" -netns "$ns" -n "$1" -timeout "${tool_timeout}s" -log "$d/out" \
		-set inet:f2b-table:addr-set-sshd -set inet:f2b-table:addr6-set-sshd \
		-- ip netns exec "$ns" fail2ban-server -xf -c "$d/conf" -s "$d/fail2ban.sock" -p "$d/fail2ban.pid" \
		--logtarget "$d/fail2ban.log" --loglevel INFO start
}

run_sshguard() {
	local d="$work/sshguard-$1"
	mkdir -p "$d"
	# The wrapper always reads /etc/sshguard/sshguard.conf: run a copy
	# that reads a private one.
	sed "s|^config=.*|config=\"$d/sshguard.conf\"|" /usr/sbin/sshguard >"$d/sshguard"
	cat >"$d/sshguard.conf" <<EOF
BACKEND="/usr/libexec/sshguard/sshg-fw-nft-sets"
THRESHOLD=30
BLOCK_TIME=120
DETECTION_TIME=1800
BLACKLIST_FILE=30:$d/blacklist
EOF
	: >"$d/auth.log"
	"$py" bench/scale/peerseed.py -n "$1" --sshguard "$d/blacklist"
	fresh_ns
	"$bin/peerwait" -netns "$ns" -n "$1" -timeout "${tool_timeout}s" -log "$d/out" \
		-set ip:sshguard:attackers -set ip6:sshguard:attackers \
		-- ip netns exec "$ns" sh "$d/sshguard" -w 127.0.0.0/8 -w ::1/128 "$d/auth.log"
}

declare -A done_ok=() gave_up=()
rows=""
t_start=$(date +%s)
first_load=$(load)
for n in $sizes; do
	((n <= max_n)) || continue
	if (($(date +%s) - t_start > deadline)); then
		echo "peers.sh: DEADLINE (${deadline} s) passed; sizes from $n on not started" >&2
		break
	fi
	row="| $n |"
	for t in moat fail2ban sshguard; do
		if [[ " $tools " != *" $t "* ]]; then
			row+=" not run |"
			continue
		fi
		if [ -n "${gave_up[$t]:-}" ]; then
			row+=" not tried |"
			continue
		fi
		l=$(load)
		echo "peers.sh: $t, $n bans (load $l)" >&2
		res=$("run_$t" "$n") || res="result=failed after=? in_kernel=?"
		echo "peers.sh:   $res" >&2
		field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$res"; }
		case $res in
		result=ok*)
			done_ok[$t]=$n
			row+=" $(field took) s (load ${l%%,*}) |"
			;;
		*)
			gave_up[$t]=$n
			row+=" **$(field result)** after $(field after) s, $(field in_kernel) of $n in the kernel (load ${l%%,*}) |"
			;;
		esac
	done
	rows+="$row"$'\n'
done
ip netns del "$ns" 2>/dev/null || true

rev="(not a git checkout)"
if head=$(git rev-parse --short HEAD 2>/dev/null); then
	rev=$head
	git diff --quiet HEAD -- internal cmd || rev+=" + uncommitted changes"
fi
echo "Run of $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) vCPU, kernel $(uname -r), moat ${rev}, fail2ban ${f2bver}, sshguard ${sgver}."
echo "Load average at the start: ${first_load}; at the end: $(load). Per-tool timeout ${tool_timeout} s."
echo
echo "| bans | moat | fail2ban (nftables-multiport) | sshguard (sshg-fw-nft-sets) |"
echo "|---|---|---|---|"
printf '%s' "$rows"
echo
for t in fail2ban sshguard; do
	[[ " $tools " == *" $t "* ]] || continue
	echo "Largest size $t restored within ${tool_timeout} s: ${done_ok[$t]:-none}${gave_up[$t]:+ (not at ${gave_up[$t]})}."
done
