#!/usr/bin/env bash
# The imported nginx filter against fail2ban's own (issue 12's bar: at
# least 20x fail2ban-regex with the same filter). Both read a generated
# nginx error.log (bench/nginx/gen_errorlog.py, seed 1): moat runs the
# nginx-http-auth jail as `moat import fail2ban` converts it from the
# host's /etc/fail2ban (jail.conf, filter.d), through `moat explain --rule
# nginx-http-auth` (the whole process: start, config, read, match, count,
# report), on N lines; fail2ban-regex runs the same filter file on the
# first F2B_N lines (it is slow). Each on one core (taskset, GOMAXPROCS=1),
# best of REPEAT runs (fail2ban: F2B_REPEAT). Prints a Markdown table of
# lines/s by wall time and by CPU time (user + system: what a shared
# machine does not inflate), the ratios, and the lines each matched on
# fail2ban's share.
#
#   bash bench/nginx/run.sh                  # 1,000,000 lines; fail2ban on 200,000
#   N=1000000 F2B_N=1000000 bash bench/nginx/run.sh
#
# Needs python3, taskset and fail2ban (scripts/setup.sh); no root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PATH:/usr/local/go/bin"

N=${N:-1000000}
F2B_N=${F2B_N:-200000}
CPU=${CPU:-0}
REPEAT=${REPEAT:-3}
F2B_REPEAT=${F2B_REPEAT:-1}
F2B_DIR=${F2B_DIR:-/etc/fail2ban}

die() {
	echo "bench/nginx/run.sh: $*" >&2
	exit 1
}
command -v fail2ban-regex >/dev/null || die "fail2ban-regex not found: install fail2ban (scripts/setup.sh)"
[[ -f $F2B_DIR/filter.d/nginx-http-auth.conf ]] || die "$F2B_DIR/filter.d/nginx-http-auth.conf not found"
command -v taskset >/dev/null || die "taskset not found: install util-linux"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 bench/nginx/gen_errorlog.py "$N" 1 >"$tmp/error.log"
head -n "$F2B_N" "$tmp/error.log" >"$tmp/error-f2b.log"
CGO_ENABLED=0 go build -o "$tmp/moat" ./cmd/moat

# The jail as an administrator would enable it, imported from fail2ban's
# own configuration.
cp -r "$F2B_DIR" "$tmp/fail2ban"
printf '[nginx-http-auth]\nenabled = true\nlogpath = %s\n' "$tmp/error.log" >"$tmp/fail2ban/jail.d/zz-bench.local"
"$tmp/moat" import fail2ban -o "$tmp/jails.toml" "$tmp/fail2ban" 2>/dev/null
grep -q 'name = "nginx-http-auth"' "$tmp/jails.toml" || die "the nginx-http-auth jail did not import"
{
	printf '[daemon]\nstate_dir = "%s/state"\nsocket = "%s/moat.sock"\n\n[login]\nsources = []\n\n' "$tmp" "$tmp"
	cat "$tmp/jails.toml"
} >"$tmp/moat.toml"
cat "$tmp/error.log" "$tmp/error-f2b.log" >/dev/null # into the page cache

. bench/lib/best.sh
matched() { awk '$1 == "lines" && $2 == "matched:" { print $3; exit }' "$1"; }

read -r moat_t moat_cpu < <(best "$REPEAT" env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/moat" --config "$tmp/moat.toml" explain --rule nginx-http-auth "$tmp/error.log")
cp "$tmp/out" "$tmp/moat.out"
moat_matched=$(matched "$tmp/moat.out")
"$tmp/moat" --config "$tmp/moat.toml" explain --rule nginx-http-auth "$tmp/error-f2b.log" >"$tmp/moat-f2b.out" 2>&1
moat_f2b_matched=$(matched "$tmp/moat-f2b.out")

read -r f2b_t f2b_cpu < <(best "$F2B_REPEAT" taskset -c "$CPU" fail2ban-regex "$tmp/error-f2b.log" "$tmp/fail2ban/filter.d/nginx-http-auth.conf")
cp "$tmp/out" "$tmp/f2b.out"
f2b_matched=$(awk '$1 == "Lines:" { for (i = 1; i <= NF; i++) if ($i == "matched,") print $(i - 1) }' "$tmp/f2b.out")

rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
moat_lps=$(rate "$N" "$moat_t")
f2b_lps=$(rate "$F2B_N" "$f2b_t")
moat_cps=$(rate "$N" "$moat_cpu")
f2b_cps=$(rate "$F2B_N" "$f2b_cpu")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

echo "Run of $(date -u '+%F %H:%M') UTC, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| tool | lines | seconds (whole process, one core) | lines/s | CPU seconds (user+sys) | lines per CPU second | matched |"
echo "|---|---|---|---|---|---|---|"
echo "| moat explain --rule nginx-http-auth (imported filter) | $N | $moat_t | $moat_lps | $moat_cpu | $moat_cps | $moat_matched |"
echo "| fail2ban-regex, filter.d/nginx-http-auth.conf | $F2B_N | $f2b_t | $f2b_lps | $f2b_cpu | $f2b_cps | $f2b_matched |"
echo
echo "moat / fail2ban-regex: $(ratio "$moat_lps" "$f2b_lps")x lines/s (wall), $(ratio "$moat_cps" "$f2b_cps")x lines per CPU second (bar: 20x). On fail2ban's $F2B_N lines moat matched $moat_f2b_matched, fail2ban $f2b_matched."
