# Sourced by the knock and SPA benches. grant_latency_row LABEL PATH reads
# `moat status --json` from stdin and prints one Markdown row of moat's own
# packet-to-grant figure (package latency), found at PATH: a dotted key,
# "knock_grant_latency" or "spa.grant_latency".
grant_latency_row() {
	python3 -c '
import json, sys
l = json.load(sys.stdin)
for k in sys.argv[2].split("."):
    l = (l or {}).get(k)
ms = lambda k: "%.2f" % (l[k] / 1e6)
print("| %s | %s | %s / %s / %s / %s ms |" % (sys.argv[1], l["count"], ms("p50_ns"), ms("p90_ns"), ms("p99_ns"), ms("max_ns")) if l else "| %s | 0 | |" % sys.argv[1])' "$1" "$2"
}
