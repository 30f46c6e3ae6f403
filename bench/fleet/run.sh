#!/usr/bin/env bash
# bench/fleet/run.sh measures moat's fleet (ban sharing over NATS JetStream),
# as root: three moat hosts in network namespaces and a real nats-server
# (scripts/setup.sh builds it), through internal/e2e's TestFleetBench:
#
#   propagation  a ban on host a (its control socket answered: the element is
#                in a's kernel) to the element in the kernels of b and c, read
#                by polling each kernel's ban sets over netlink every 0.5 ms;
#   sustained    RATE bans/s for 10 s published into one bucket, applied by b
#                and c (real daemons, real kernels);
#   join         a host joining a fleet whose bucket holds JOIN live bans, from
#                `moat run` to every one installed.
#
# Environment: PROPAGATION (bans, default 300), RATE (default 10000),
# JOIN (default 1000000). Output: the BENCH lines, also in /tmp/moat-fleet-bench.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [[ $(id -u) -ne 0 ]]; then
	echo "bench/fleet/run.sh: needs root (network namespaces, nftables)" >&2
	exit 1
fi
export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
echo "== $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg) cores: $(nproc)"
MOAT_BENCH_FLEET=1 \
	MOAT_BENCH_PROPAGATION=${PROPAGATION:-300} \
	MOAT_BENCH_RATE=${RATE:-10000} \
	MOAT_BENCH_JOIN=${JOIN:-1000000} \
	go test ./internal/e2e/ -run '^TestFleetBench$' -count=1 -v -timeout 30m 2>&1 |
	tee /tmp/moat-fleet-bench.log | grep -E 'BENCH|^(--- |ok|FAIL|PASS)'
echo "== done $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
