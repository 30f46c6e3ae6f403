# Sourced by the knock and SPA benches. grant_latency_row LABEL PATH READ
# reads `moat status --json` from stdin and prints one Markdown row of
# moat's own packet-to-grant figure (package latency), found at PATH (a
# dotted key, "knock_grant_latency" or "spa.grant_latency"), and of its
# part before moat read the packet from the kernel, found at READ
# ("knock_read_latency" or "spa.read_latency"): the kernel's queues and
# the wait for a CPU, which no daemon's code shortens.
grant_latency_row() {
	python3 -c '
import json, sys
st = json.load(sys.stdin)
def get(path):
    l = st
    for k in path.split("."):
        l = (l or {}).get(k)
    return l
def q(l):
    ms = lambda k: "%.2f" % (l[k] / 1e6)
    return "%s / %s / %s / %s ms" % (ms("p50_ns"), ms("p90_ns"), ms("p99_ns"), ms("max_ns")) if l else ""
l, r = get(sys.argv[2]), get(sys.argv[3])
print("| %s | %s | %s | %s |" % (sys.argv[1], l["count"] if l else 0, q(l), q(r)))' "$1" "$2" "$3"
}
