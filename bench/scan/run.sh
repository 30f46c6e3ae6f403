#!/usr/bin/env bash
# Scan-guard bars, in throwaway namespaces (method and figures: bench/scan/README.md).
# Part 1, moat's defaults:
#   - nmap -sS of 1,000 ports at default timing, NMAP_RUNS times (default 5)
#     against a fresh daemon each: how many SYNs reached the host before the
#     ban took effect, counted ahead of moat's table (a netdev ingress
#     counter, minus what moat's ban rule dropped);
#   - the detector's throughput (Go benchmark, one core, allocations).
# Part 2, the real daemon under a spoofed-source SYN flood: 1,000,000
#   distinct IPv6 sources (fd00:210::/32) at 100,000 packets/s for 10 s at a
#   closed port; the bar: RSS under 256 MB and no NFLOG loss. Once with
#   [firewall] log_rate and log_burst at 1,000,000 (the kernel's limit does
#   not hide loss: the bar is about the receiver), once at the defaults
#   (1,000/s, burst 2,000: what a flood can push to the daemon out of the box).
# Needs root and nmap; about a minute. Usage: bash bench/scan/run.sh
# Environment: NMAP=0 skips part 1, FLOOD=0 part 2; PPS (total, default
# 100000), FLOODERS (flooder processes sharing PPS, default 1: one reaches
# 100,000/s here), BATCH (packets per sendmmsg, default 64), DURATION
# (default 10s), PORT (the closed port, default 8080), KEEP=1 keeps the
# run's directory (raw figures) instead of deleting it.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "bench/scan/run.sh: needs root" >&2; exit 1; }
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"
pps=${PPS:-100000} flooders=${FLOODERS:-1} batch=${BATCH:-64} duration=${DURATION:-10s} port=${PORT:-8080}
work=$(mktemp -d /tmp/moat-scan.XXXXXX)
srv="moat-t-ss$$" cli="moat-t-sc$$" ifs="mtss$$" ifc="mtsc$$"
pid=""       # the moat daemon
bgpids=()    # flooders and the sampler
cleanup() {
	for p in "${bgpids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${bgpids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	ip netns del "$srv" 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP
CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat
go build -o "$work/knockbench" ./bench/knock/knockbench
ip netns add "$srv"; ip netns add "$cli"
ip -n "$srv" link set lo up; ip -n "$cli" link set lo up
ip link add "$ifs" netns "$srv" type veth peer name "$ifc" netns "$cli"
ip -n "$srv" addr add 10.210.77.1/24 dev "$ifs"; ip -n "$cli" addr add 10.210.77.2/24 dev "$ifc"
ip -n "$srv" addr add fd00:210:77::1/64 dev "$ifs" nodad; ip -n "$cli" addr add fd00:210:77::2/64 dev "$ifc" nodad
ip -n "$srv" link set "$ifs" up; ip -n "$cli" link set "$ifc" up
# The server's default route points at the client, as a host's uplink
# does: anything it might send to a forged source ends in the client
# namespace, which does not forward. Neighbours are fixed, so no packet of
# the flood waits for (or is dropped by) neighbour discovery.
ip -n "$srv" -6 route add default via fd00:210:77::2
ip -n "$cli" -6 neigh replace fd00:210:77::1 lladdr "$(ip -n "$srv" -br link show "$ifs" | awk '{print $3}')" dev "$ifc" nud permanent
ip -n "$srv" -6 neigh replace fd00:210:77::2 lladdr "$(ip -n "$cli" -br link show "$ifc" | awk '{print $3}')" dev "$ifs" nud permanent
for _ in $(seq 50); do ip -n "$cli" link show "$ifc" | grep -q LOWER_UP && break; sleep 0.1; done

moat() { "$work/moat" --config "$work/moat.toml" "$@"; }
start_moat() {
	ip netns exec "$srv" "$work/moat" --config "$work/moat.toml" run >>"$work/log" 2>&1 &
	pid=$!
	for _ in $(seq 200); do moat status >/dev/null 2>&1 && return; sleep 0.05; done
	echo "moat did not start:" >&2; cat "$work/log" >&2; exit 1
}
stop_moat() {
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
	ip netns exec "$srv" nft delete table inet moat 2>/dev/null || true
}

if [ "${NMAP:-1}" != 0 ]; then
	cat >"$work/moat.toml" <<EOT
[daemon]
state_dir = "$work/state"
socket = "$work/moat.sock"
on_exit = "remove"
[firewall]
open = ["tcp/22"]
[login]
enabled = false
EOT
	counter() { moat status --json | python3 -c "import json,sys; c=json.load(sys.stdin)['counters']; print(c.get('$1',{}).get('packets',0))"; }
	# Every SYN the scanner sends, counted in a table of the bench's own on
	# the server veth's ingress hook, ahead of moat's table: what arrived.
	# Those moat's ban rule dropped never reached the host; the rest did.
	ip netns exec "$srv" nft -f - <<EOT
table netdev moatscanahead {
	counter probes {}
	chain in {
		type filter hook ingress device "$ifs" priority 0; policy accept;
		ip saddr 10.210.77.2 tcp flags & (syn | ack) == syn counter name probes
	}
}
EOT
	runs=${NMAP_RUNS:-5}
	results=()
	bans=0
	for i in $(seq "$runs"); do
		# A fresh daemon and state each run: the scanner is a stranger.
		rm -rf "$work/state"
		start_moat
		sleep 1
		ip netns exec "$srv" nft reset counter netdev moatscanahead probes >/dev/null
		# Once banned, nmap (default timing) slows down and retries for
		# many minutes: the ban comes in its first millisecond, so cap it.
		timeout 10 ip netns exec "$cli" nmap -n -Pn -sS -p 1-1000 10.210.77.1 >/dev/null || true
		arrived=$(ip netns exec "$srv" nft -j list counter netdev moatscanahead probes | python3 -c "import json,sys; print(next(x['counter']['packets'] for x in json.load(sys.stdin)['nftables'] if 'counter' in x))")
		dropped=$(counter ban)
		held=$(counter scanhold)
		logged=$(counter closed)
		results+=("$((arrived - dropped - held)) $arrived $dropped $held $logged")
		echo "run $i: reached $((arrived - dropped - held)) (arrived $arrived, dropped by the ban $dropped, by the scan hold $held, dropped as closed $logged)" >&2
		bans=$((bans + $(moat status --json | python3 -c "import json,sys; print(json.load(sys.stdin)['scan']['blocked'])")))
		stop_moat
	done
	ip netns exec "$srv" nft delete table netdev moatscanahead
	reached=$(printf '%s\n' "${results[@]}" | awk '{print $1}' | sort -n | tr '\n' ' ')
	worst=$(printf '%s\n' "${results[@]}" | awk '{print $1}' | sort -n | tail -1)
	beforeban=$(printf '%s\n' "${results[@]}" | awk '{print $2 - $3}' | sort -n | tr '\n' ' ')
	bench=$(go test ./internal/portscan -run X -bench 'BenchmarkObserve$' -benchmem -benchtime 2s -cpu 1 | grep Benchmark)
	cat <<EOT
| what | bar | measured |
|---|---|---|
| nmap -sS -p 1-1000 (default timing): SYNs that reached the host (arrived at the ingress counter ahead of moat's table, minus those moat's ban rule and the kernel's scan hold dropped), ${runs} runs, sorted | < 10 | ${reached}(worst ${worst}; scan bans: ${bans}) |
| the same, counting what the scan hold dropped as reached (SYNs before the daemon's ban) | | ${beforeban}|
| detector, one core: \`${bench}\` | >= 1,000,000 packets/s, 0 allocs | see the line |
EOT
	echo
fi

[ "${FLOOD:-1}" != 0 ] || exit 0

# ---- Part 2: the spoofed-source flood against the real daemon ----

# sample PID OUT: every 0.5 s, one line "seconds VmRSS_kB socket_rmem_bytes
# socket_drops" until $work/stop exists: the daemon's resident memory, and
# its NFLOG socket's receive queue and drop count as the kernel shows them
# in the daemon's namespace (/proc/PID/net/netlink, the row whose portid is
# the group's peer in /proc/PID/net/netfilter/nfnetlink_log). Builtins
# only, but for sleep: the machine has two CPUs and the flood wants both.
sample() {
	local k v r port="" sk eth p grp rmem wmem dump locks drops t0=${EPOCHREALTIME}
	while [ ! -e "$work/stop" ]; do
		if [ -z "$port" ]; then
			while read -r grp p r; do [ "$grp" = 7 ] && port=$p; done <"/proc/$1/net/netfilter/nfnetlink_log"
		fi
		local rss=0 q=0 dr=0
		while read -r k v r; do [ "$k" = VmRSS: ] && { rss=$v; break; }; done <"/proc/$1/status"
		while read -r sk eth p grp rmem wmem dump locks drops r; do
			[ "$eth" = 12 ] && [ "$p" = "$port" ] && { q=$rmem; dr=$drops; }
		done <"/proc/$1/net/netlink"
		echo "$(( (${EPOCHREALTIME/./} - ${t0/./}) / 1000 )) $rss $q $dr"
		sleep 0.5
	done >"$2"
}
cputicks() { local f; read -r -a f <"/proc/$1/stat"; echo $((f[13] + f[14])); }
status() { moat status --json; }
totals() { status | python3 -c "import json,sys; s=json.load(sys.stdin)['scan']; print(s['report']['totals']['packets'])"; }

# flood_run LABEL LOG_RATE LOG_BURST: a fresh daemon (new state dir),
# DURATION of SYNs at PORT from FLOODERS processes, then the figures into
# $work/LABEL.*.
flood_run() {
	local label=$1 d="$work/$1"
	mkdir -p "$d"
	cat >"$work/moat.toml" <<EOT
[daemon]
state_dir = "$d/state"
socket = "$work/moat.sock"
on_exit = "remove"
[firewall]
open = ["tcp/22"]
log_rate = $2
log_burst = $3
[login]
enabled = false
# [scan]: the defaults (block_level 3, max_sources 200000, window 5m).
EOT
	start_moat
	# What arrives at the server, before conntrack and moat's table: a
	# counter in a table of the bench's own, on the veth's ingress hook.
	ip netns exec "$srv" nft -f - <<EOT
table netdev moatscanbench {
	counter flood {}
	chain in {
		type filter hook ingress device "$ifs" priority 0; policy accept;
		meta l4proto tcp th dport $port counter name flood
	}
}
EOT
	sleep 2
	grep VmRSS "/proc/$pid/status" | awk '{print $2}' >"$d/rss_before"
	cat "/proc/$pid/net/netfilter/nfnetlink_log" >"$d/nfnetlink_log_before"
	# The receive buffers of the namespace's netfilter netlink sockets
	# (skmem rb): the NFLOG socket's is the large one.
	ip netns exec "$srv" ss -f netlink -a -m | grep -o 'nft:.*rb[0-9]*' | sed 's/.*rb//' | sort -n | tail -1 >"$d/rcvbuf"
	rm -f "$work/stop"
	sample "$pid" "$d/samples" &
	local sampler=$!
	bgpids+=("$sampler")
	read -r _ u0 n0 s0 i0 w0 q0 sq0 _ </proc/stat
	cputicks "$pid" >"$d/cpu0"
	date +%s.%N >"$d/t0"
	local fl=()
	for i in $(seq "$flooders"); do
		ip netns exec "$cli" "$work/knockbench" flood -dst fd00:210:77::1 -port "$port" -pps $((pps / flooders)) \
			-src fd00:210::/32 -exclude fd00:210:77::/64 -batch "$batch" -duration "$duration" >"$d/flood.$i" 2>&1 &
		fl+=($!)
		bgpids+=($!)
	done
	for p in "${fl[@]}"; do wait "$p" || true; done
	bgpids=("$sampler") # the flooders are reaped: their PIDs may be reused
	date +%s.%N >"$d/t1"
	read -r _ u1 n1 s1 i1 w1 q1 sq1 _ </proc/stat
	cputicks "$pid" >"$d/cpu1"
	# The daemon may still be working through its socket buffer: wait
	# until the detector's packet count stops moving (10 s at most).
	local prev=-1 cur
	for _ in $(seq 20); do
		cur=$(totals)
		[ "$cur" = "$prev" ] && break
		prev=$cur
		sleep 0.5
	done
	cputicks "$pid" >"$d/cpu2"
	date +%s.%N >"$d/t2"
	touch "$work/stop"
	wait "$sampler" || true
	bgpids=()
	# A few packets after the flood: a loss at its very end is a gap that
	# only a later packet's sequence number reveals.
	ip netns exec "$cli" "$work/knockbench" flood -dst fd00:210:77::1 -port "$port" -pps 1000 \
		-src fd00:210::/32 -exclude fd00:210:77::/64 -batch 1 -duration 20ms >"$d/sentinel" 2>&1
	sleep 0.5
	status >"$d/status.json"
	ip netns exec "$srv" nft -j list counter netdev moatscanbench flood >"$d/ingress.json"
	grep VmHWM "/proc/$pid/status" | awk '{print $2}' >"$d/hwm"
	grep VmRSS "/proc/$pid/status" | awk '{print $2}' >"$d/rss_after"
	cat "/proc/$pid/net/netfilter/nfnetlink_log" >"$d/nfnetlink_log_after"
	cat "/proc/$pid/net/netlink" >"$d/netlink_after"
	echo "$((u1 - u0)) $((n1 - n0)) $((s1 - s0)) $((i1 - i0)) $((w1 - w0)) $((q1 - q0)) $((sq1 - sq0))" >"$d/machine"
	stop_moat
	ip netns exec "$srv" nft delete table netdev moatscanbench
}

flood_run high 1000000 1000000
flood_run default 1000 2000

python3 - "$work" "$pps" "$flooders" "$batch" "$duration" "$(getconf CLK_TCK)" "$port" <<'EOF'
import json, sys
work, pps, flooders, batch, duration, hz, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]

def secs(d):  # a Go duration as the script takes it: "10s", "1500ms", "1m"
    import re
    units = {"ms": 1e-3, "s": 1, "m": 60}
    return sum(float(v) * units[u] for v, u in re.findall(r"([0-9.]+)(ms|s|m)", d))

def rd(label, name):
    return open(f"{work}/{label}/{name}").read()

def run(label):
    r = {}
    floods = [json.loads(rd(label, f"flood.{i}").strip().splitlines()[-1]) for i in range(1, flooders + 1)]
    r["sent"] = sum(f["sent"] for f in floods)
    r["send_pps"] = sum(f["pps"] for f in floods)
    r["send_errors"] = sum(f["errors"] for f in floods)
    r["sentinel"] = json.loads(rd(label, "sentinel").strip().splitlines()[-1])["sent"]
    st = json.loads(rd(label, "status.json"))
    r["closed"] = st["counters"]["closed"]["packets"]
    ing = json.loads(rd(label, "ingress.json"))
    r["ingress"] = next(x["counter"]["packets"] for x in ing["nftables"] if "counter" in x)
    sc = st["scan"]
    t = sc["report"]["totals"]
    r["observed"], r["lost"] = t["packets"], sc["lost"]
    r["sources"], r["max_sources"], r["evicted"] = t["sources"], t["max_sources"], t["evicted"]
    r["levels"], r["blocked"], r["events"] = sc["report"]["levels"], sc["blocked"], len(sc["events"] or [])
    t0, t1, t2 = (float(rd(label, x)) for x in ("t0", "t1", "t2"))
    c0, c1, c2 = (int(rd(label, x)) for x in ("cpu0", "cpu1", "cpu2"))
    r["flood_s"], r["drain_s"] = t1 - t0, t2 - t1
    r["cpu_s"] = (c2 - c0) / hz
    r["cpu_flood_pct"] = 100 * (c1 - c0) / hz / (t1 - t0)
    samples = [list(map(int, l.split())) for l in rd(label, "samples").splitlines() if l.strip()]
    r["samples"] = samples
    r["rss_before"] = int(rd(label, "rss_before")) / 1024
    r["rss_during"] = max(s[1] for s in samples) / 1024 if samples else 0
    r["rss_after"] = int(rd(label, "rss_after")) / 1024
    r["hwm"] = int(rd(label, "hwm")) / 1024
    r["rmem_max"] = max(s[2] for s in samples) if samples else 0
    r["rcvbuf"] = int(rd(label, "rcvbuf") or 0)
    # The NFLOG socket's row in /proc/net/netlink (protocol 12, portid = the
    # group's peer): Drops counts datagrams the kernel could not queue.
    port = None
    for l in rd(label, "nfnetlink_log_after").splitlines():
        f = l.split()
        if f and f[0] == "7":
            port, r["nfnl_line"] = f[1], " ".join(f)
    r["sock_drops"] = None
    for l in rd(label, "netlink_after").splitlines()[1:]:
        f = l.split()
        if len(f) >= 9 and f[1] == "12" and f[2] == port:
            r["sock_drops"] = int(f[8])
    m = list(map(int, rd(label, "machine").split()))
    tot = sum(m)
    r["machine"] = {k: 100 * v / tot if tot else 0 for k, v in zip(("user", "nice", "system", "idle", "iowait", "irq", "softirq"), m)}
    return r

H, D = run("high"), run("default")
n = lambda x: f"{x:,}"
pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "-"
print(f"Flood: IPv6 TCP SYNs to [fd00:210:77::1]:{port} (closed), sources random in fd00:210::/32 minus fd00:210:77::/64, "
      f"{flooders} flooder process(es) at {pps // flooders:,}/s each, -batch {batch}, {duration}.")
print()
print("| | log_rate = log_burst = 1,000,000 | defaults: log_rate 1,000, log_burst 2,000 |")
print("|---|---|---|")
rows = [
    ("flooder: packets sent (rate; send errors)", lambda r: f"{n(r['sent'])} ({n(round(r['send_pps']))}/s over {r['flood_s']:.2f} s; {r['send_errors']} errors)"),
    ("+ sentinel packets after the flood (reveal a trailing gap)", lambda r: n(r["sentinel"])),
    ("arrived at the server's veth (netdev ingress counter)", lambda r: f"{n(r['ingress'])} ({pct(r['ingress'], r['sent'] + r['sentinel'])} of sent)"),
    ("reached moat's closed-port log rule (`counters.closed`)", lambda r: f"{n(r['closed'])} ({pct(r['closed'], r['ingress'])} of arrived)"),
    ("received by the daemon (`scan.report.totals.packets`)", lambda r: f"{n(r['observed'])} ({pct(r['observed'], r['closed'])} of reached)"),
    ("NFLOG loss reported (`scan.lost`: sequence gaps + ENOBUFS)", lambda r: n(r["lost"])),
    ("logged by the kernel (received + lost)", lambda r: n(r["observed"] + r["lost"])),
    ("reached the log rule but not received (cut by the log limit, or lost)", lambda r: n(r["closed"] - r["observed"])),
    ("kernel: NFLOG socket drops (/proc/net/netlink `Drops`, datagrams)", lambda r: "-" if r["sock_drops"] is None else n(r["sock_drops"])),
    ("kernel: socket receive queue, peak of 0.5 s samples", lambda r: f"{r['rmem_max'] / 1024:.1f} KiB (buffer: {r['rcvbuf'] / 2**20:.0f} MiB)"),
    ("daemon RSS before / peak of 0.5 s samples / after", lambda r: f"{r['rss_before']:.1f} / {r['rss_during']:.1f} / {r['rss_after']:.1f} MB"),
    ("daemon peak RSS (VmHWM)", lambda r: f"{r['hwm']:.1f} MB"),
    ("sources tracked at the end (max_sources; evicted)", lambda r: f"{n(r['sources'])} ({n(r['max_sources'])}; {n(r['evicted'])} evicted)"),
    ("danger levels 0..5 of tracked sources; bans; scan events", lambda r: f"{r['levels']}; {r['blocked']}; {r['events']}"),
    ("daemon CPU time (flood, then until its count stood still), % of one core during the flood", lambda r: f"{r['cpu_s']:.2f} s (+{r['drain_s']:.1f} s), {r['cpu_flood_pct']:.0f}%"),
    ("whole machine during the flood: user / system / softirq / idle", lambda r: "{user:.0f} / {system:.0f} / {softirq:.0f} / {idle:.0f} %".format(**r["machine"])),
]
for name, f in rows:
    print(f"| {name} | {f(H)} | {f(D)} |")
print()
ok_rss = H["hwm"] < 256
ok_loss = H["lost"] == 0 and H["closed"] == H["observed"]
want = pps * secs(duration)
ok_rate = H["ingress"] >= 0.99 * want and H["send_pps"] >= 0.99 * pps
print(f"Bar, log_rate 1,000,000 run: RSS < 256 MB: {'met' if ok_rss else 'NOT met'} ({H['hwm']:.1f} MB peak); "
      f"no NFLOG loss: {'met' if ok_loss else 'NOT met'} ({n(H['lost'])} lost, {n(H['closed'] - H['observed'])} reached but not received); "
      f"{n(round(want))} packets at {n(pps)}/s: {'reached' if ok_rate else 'NOT reached'} ({n(H['ingress'])} arrived, {n(round(H['send_pps']))}/s sent).")
for label, r in (("log_rate 1,000,000", H), ("defaults", D)):
    print()
    print(f"{label}: nfnetlink_log after (group portid qlen mode range flush use): {r.get('nfnl_line', '-')}")
    print(f"{label}: samples (ms since start, VmRSS kB, socket rmem bytes, socket drops):")
    for s in r["samples"]:
        print("    " + " ".join(map(str, s)))
EOF
