#!/usr/bin/env bash
# bench/crowdsec/run.sh measures what moat's fleet sharing is compared with
# (issue 14): CrowdSec 1.4 (Debian packages crowdsec and
# crowdsec-firewall-bouncer), a decision added on one agent's local API
# (LAPI) to the element in the kernel of two hosts whose nftables bouncers
# poll that API. Three network namespaces: the LAPI host, and B and C,
# each with its own bouncer and its own nftables. Decisions are added with
# `cscli decisions add` at times that do not line up with the bouncers'
# polling; a poller in B and in C lists the bouncer's set every 20 ms and
# records when each address appears.
#
#   bash bench/crowdsec/run.sh [DECISIONS] [UPDATE_FREQUENCY...]
#
# Defaults: 30 decisions, update_frequency 10s (the bouncer's default)
# and 1s. Needs root. Nothing leaves the namespaces; everything is removed
# at exit (processes by PID).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

n=${1:-30}
shift || true
freqs=("$@")
((${#freqs[@]})) || freqs=(10s 1s)

if [[ $(id -u) -ne 0 ]]; then
	echo "bench/crowdsec: needs root (network namespaces)" >&2
	exit 1
fi
for c in crowdsec cscli crowdsec-firewall-bouncer nft; do
	command -v "$c" >/dev/null || {
		echo "bench/crowdsec: $c missing: apt-get install crowdsec crowdsec-firewall-bouncer nftables" >&2
		echo "  (Debian's postinst registers to CrowdSec's central API; with no internet, first write a" >&2
		echo "   non-empty /etc/crowdsec/online_api_credentials.yaml, then dpkg --configure -a)" >&2
		exit 1
	}
done

tag=$$
lapi=moat-t-cs-a-$tag
hb=moat-t-cs-b-$tag
hc=moat-t-cs-c-$tag
work=$(mktemp -d /tmp/moat-bench-crowdsec.XXXXXX)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for ns in "$lapi" "$hb" "$hc"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# The LAPI host reaches B on 10.210.77.0/30 and C on 10.210.77.4/30.
ip netns add "$lapi"
ip netns add "$hb"
ip netns add "$hc"
for ns in "$lapi" "$hb" "$hc"; do ip -n "$ns" link set lo up; done
ip -n "$lapi" link add csb type veth peer name csa netns "$hb"
ip -n "$lapi" link add csc type veth peer name csa netns "$hc"
ip -n "$lapi" addr add 10.210.77.1/30 dev csb
ip -n "$hb" addr add 10.210.77.2/30 dev csa
ip -n "$lapi" addr add 10.210.77.5/30 dev csc
ip -n "$hc" addr add 10.210.77.6/30 dev csa
ip -n "$lapi" link set csb up
ip -n "$lapi" link set csc up
ip -n "$hb" link set csa up
ip -n "$hc" link set csa up

# A private copy of CrowdSec's configuration: its own database, the LAPI
# on the namespace's addresses, no central API, no metrics port.
cp -r /etc/crowdsec "$work/etc"
mkdir -p "$work/data" "$work/log"
cfg=$work/etc/config.yaml
sed -i \
	-e "s#config_dir: /etc/crowdsec/#config_dir: $work/etc/#" \
	-e "s#data_dir: /var/lib/crowdsec/data/#data_dir: $work/data/#" \
	-e "s#db_path: .*#db_path: $work/data/crowdsec.db#" \
	-e "s#log_dir: /var/log/#log_dir: $work/log/#" \
	-e "s#listen_uri: .*#listen_uri: 0.0.0.0:8080#" \
	-e "s#credentials_path: /etc/crowdsec/local_api_credentials.yaml#credentials_path: $work/etc/local_api_credentials.yaml#" \
	-e "s#profiles_path: /etc/crowdsec/#profiles_path: $work/etc/#" \
	-e "s#console_path: /etc/crowdsec/#console_path: $work/etc/#" \
	-e "s#simulation_path: /etc/crowdsec/#simulation_path: $work/etc/#" \
	-e "s#acquisition_path: /etc/crowdsec/#acquisition_path: $work/etc/#" \
	-e "s#acquisition_dir: /etc/crowdsec/#acquisition_dir: $work/etc/#" \
	-e "s#daemonize: true#daemonize: false#" \
	"$cfg"
# No central API: drop online_client (the LAPI would try to reach it).
sed -i -e '/online_client:/,/credentials_path:/d' "$cfg"
# No metrics listener (port 6060 would be per namespace anyway).
sed -i -e '/^prometheus:/,/listen_port:/ s/enabled: true/enabled: false/' "$cfg"

cs() { ip netns exec "$lapi" cscli -c "$cfg" "$@"; }
cs machines add bench --auto --force -f "$work/etc/local_api_credentials.yaml" >/dev/null 2>&1
sed -i "s#^url: .*#url: http://127.0.0.1:8080#" "$work/etc/local_api_credentials.yaml"

ip netns exec "$lapi" crowdsec -c "$cfg" -no-cs -no-capi >"$work/log/lapi.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	ip netns exec "$lapi" bash -c '</dev/tcp/127.0.0.1/8080' 2>/dev/null && break
	sleep 0.1
done

poll() { # poll NS OUT: list the bouncer's set every 20 ms, print "epoch addr" once per address
	local ns=$1 out=$2
	ip netns exec "$ns" bash -c '
		declare -A seen
		while :; do
			now=$(date +%s.%N)
			for a in $(nft -j list set ip crowdsec crowdsec-blacklists 2>/dev/null | grep -o "10\.210\.200\.[0-9]*" ); do
				[[ -n ${seen[$a]:-} ]] && continue
				seen[$a]=1
				echo "$now $a"
			done
			sleep 0.02
		done' >"$out" 2>/dev/null &
	pids+=($!)
}

stats() { # stats FILE: p50 p99 max of the numbers in FILE (ms)
	sort -n "$1" | awk '{v[NR]=$1} END { if (NR == 0) { print "none"; exit }
		p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
		printf "n=%d p50=%.0f ms p99=%.0f ms max=%.0f ms\n", NR, p50, p99, v[NR] }'
}

echo "# CrowdSec $(crowdsec -version 2>&1 | awk '/version:/ {print $4; exit}'), crowdsec-firewall-bouncer $(dpkg-query -W -f='${Version}' crowdsec-firewall-bouncer), $n decisions, $(date -u +%F)"
round=0
for freq in "${freqs[@]}"; do
	round=$((round + 1))
	bpids=()
	for h in "$hb" "$hc"; do
		key=$(cs bouncers add "bench-$h-$round" -o raw 2>/dev/null)
		bc=$work/bouncer-$h-$round.yaml
		cat >"$bc" <<YAML
mode: nftables
pid_dir: $work/
update_frequency: $freq
daemonize: false
log_mode: file
log_dir: $work/log/$h-$round/
log_level: info
api_url: http://$([[ $h == "$hb" ]] && echo 10.210.77.1 || echo 10.210.77.5):8080/
api_key: $key
disable_ipv6: true
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: crowdsec-blacklists
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: false
prometheus:
  enabled: false
YAML
		mkdir -p "$work/log/$h-$round"
		ip netns exec "$h" crowdsec-firewall-bouncer -c "$bc" >"$work/log/$h-$round.out" 2>&1 &
		pids+=($!)
		bpids+=($!)
	done
	# Let both bouncers make their table and take the (empty) start-up stream.
	for h in "$hb" "$hc"; do
		for _ in $(seq 150); do
			ip netns exec "$h" nft list set ip crowdsec crowdsec-blacklists >/dev/null 2>&1 && break
			sleep 0.1
		done
	done
	poll "$hb" "$work/seen-b-$round"
	poll "$hc" "$work/seen-c-$round"
	sleep 1
	: >"$work/added-$round"
	for i in $(seq "$n"); do
		a=10.210.200.$(((round - 1) * 100 + i))
		t=$(date +%s.%N)
		cs decisions add -i "$a" -d 1h -R "bench $round" >/dev/null 2>&1
		echo "$t $a $(date +%s.%N)" >>"$work/added-$round"
		# 1.37 s apart: never in step with a whole-second poll.
		sleep 1.37
	done
	# Wait for the last decision to reach both kernels (two polls at most).
	per=${freq%s}
	sleep $((2 * per + 1))
	for h in b c; do
		awk 'NR == FNR { t[$2] = $1; next } ($2 in t) { printf "%.1f\n", ($1 - t[$2]) * 1000 }' \
			"$work/added-$round" "$work/seen-$h-$round" >"$work/lat-$h-$round"
	done
	cat "$work/lat-b-$round" "$work/lat-c-$round" >"$work/lat-$round"
	awk '{ printf "%.1f\n", ($3 - $1) * 1000 }' "$work/added-$round" >"$work/cscli-$round"
	echo "update_frequency $freq: decision added (cscli) -> element in B's and C's kernel: $(stats "$work/lat-$round") (missing: $((2 * n - $(wc -l <"$work/lat-$round"))))"
	echo "  of which cscli decisions add itself: $(stats "$work/cscli-$round")"
	for p in "${bpids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]: -2}"; do kill "$p" 2>/dev/null || true; done
	sleep 1
	for h in "$hb" "$hc"; do ip netns exec "$h" nft delete table ip crowdsec 2>/dev/null || true; done
done
