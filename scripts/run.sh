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
echo "run.sh: checking Go and CA certificates (scripts/setup.sh --go-only)" >&2
bash scripts/setup.sh --go-only
export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
# The first build downloads the modules and compiles everything (about
# 40 s on 2 cores); later ones take a second or two. Say so rather
# than sit silent.
echo "run.sh: building ./moat with $(go version | cut -d' ' -f3) (the first build takes about a minute)" >&2
start=$SECONDS
CGO_ENABLED=0 go build -trimpath -o moat ./cmd/moat
echo "run.sh: built ./moat in $((SECONDS - start)) s; starting \`./moat run $*\`" >&2
echo "run.sh: Ctrl-C stops moat and leaves the firewall up (on_exit = \"keep\"); \`./moat firewall off\` takes it down" >&2
exec ./moat run "$@"
