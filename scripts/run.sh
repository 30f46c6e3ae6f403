#!/usr/bin/env bash
# run.sh builds moat as one static binary (./moat) and runs the daemon in
# the foreground, on /etc/moat/moat.toml or, when that does not exist, on
# the embedded default: sshd's ports open, everything else closed.
# Extra arguments go to `moat run` (e.g. --config FILE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh: moat changes the firewall: run it as root" >&2
	exit 1
fi
bash scripts/setup.sh --go-only
export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
CGO_ENABLED=0 go build -trimpath -o moat ./cmd/moat
exec ./moat run "$@"
