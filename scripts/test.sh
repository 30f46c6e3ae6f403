#!/usr/bin/env bash
# test.sh runs moat's whole test suite as CI does: setup, vet, then every
# test with the race detector. The integration tests need root; as another
# user they skip (outside CI) and the rest still runs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -eq 0 ]]; then
	bash scripts/setup.sh
else
	echo "test.sh: not root: skipping scripts/setup.sh; integration tests will skip" >&2
fi

# A non-login shell or CI may lack the sbin directories (ip, nft, sshd)
# and Go's own directory.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v go >/dev/null; then
	export PATH="/usr/local/go/bin:$PATH"
fi

go version
echo "== go vet ./..."
go vet ./...
# Test artifacts (the live page's screenshots in headless Chromium) stay
# in test-artifacts/ of the checkout, where CI can collect them.
export MOAT_ARTIFACTS=${MOAT_ARTIFACTS:-$PWD/test-artifacts}
mkdir -p "$MOAT_ARTIFACTS"
echo "== go test -race ./... (artifacts in $MOAT_ARTIFACTS)"
go test -race -count=1 -timeout 25m ./...
