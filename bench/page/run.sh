#!/usr/bin/env bash
# bench/page/run.sh (root): what the live page and `moat demo` cost.
#  1. RSS of an idle daemon in a throwaway namespace without [page], with
#     [page] on, and with the page under load: 20 live feeds asked for
#     (16 are served, the limit) and 50 state requests.
#  2. The wall time of `moat demo` (five scenarios, lab built and removed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
work=$(mktemp -d)
NS=moat-t-page$$
pid=
cleanup() {
	[[ -n $pid ]] && kill "$pid" 2>/dev/null && sleep 1
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$work/moat" ./cmd/moat
ip netns add "$NS"
ip -n "$NS" link set lo up
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$pid/status"; }
measure() {
	local page=$1 label=$2 st=$work/st
	rm -rf "$st"
	mkdir -p "$st"
	printf '[daemon]\nstate_dir = "%s"\nsocket = "%s/m.sock"\non_exit = "remove"\n[firewall]\nopen = ["tcp/22"]\n[login]\nenabled = false\n%s\n' \
		"$st" "$st" "$page" >"$work/m.toml"
	ip netns exec "$NS" "$work/moat" --config "$work/m.toml" run --force >"$work/log" 2>&1 &
	pid=$!
	sleep 4
	echo "daemon RSS, $label, idle: $(rss)"
	if [[ -n $page ]]; then
		local tok curls=()
		tok=$(cat "$st/page.token")
		for _ in $(seq 20); do
			ip netns exec "$NS" timeout 20 curl -s -H "Authorization: Bearer $tok" http://127.0.0.1:9734/events >/dev/null &
			curls+=($!)
		done
		for _ in $(seq 50); do
			ip netns exec "$NS" curl -s -H "Authorization: Bearer $tok" http://127.0.0.1:9734/api/state >/dev/null
		done
		sleep 5
		echo "daemon RSS, $label, 16 feeds open + 50 state requests: $(rss)"
		wait "${curls[@]}" || true
	fi
	kill "$pid"
	wait "$pid" || true
	pid=
}
measure "" "no [page]"
measure $'[page]\nlisten = "127.0.0.1:9734"' "[page] on"
echo "moat demo:"
/usr/bin/time -f "moat demo wall time: %e s (user %U s, sys %S s)" "$work/moat" demo --page-port 0 | tail -3
