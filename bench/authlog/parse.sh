#!/usr/bin/env bash
# parse.sh measures moat's sshd log parser against sshguard's (sshg-parser)
# and fail2ban's (fail2ban-regex with its sshd filter), each on one core,
# on the shared generated auth.log (seed 1), and prints a Markdown table of
# lines/s, ratios and the attempts each tool found.
#
#   bash bench/authlog/parse.sh            # 1,000,000 lines; fail2ban on the first 200,000
#   N=200000 F2B_N=200000 bash bench/authlog/parse.sh
#
# Times are wall clock of the whole process (start, read, parse, output),
# best of REPEAT runs (default 3; fail2ban: F2B_REPEAT, default 1, as it is
# slow). Needs python3, taskset, sshguard and fail2ban (scripts/setup.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

N=${N:-1000000}
F2B_N=${F2B_N:-200000}
CPU=${CPU:-0}
REPEAT=${REPEAT:-3}
F2B_REPEAT=${F2B_REPEAT:-1}
GEN=${GEN:-../shared/bench/gen_authlog.py}
SSHG=${SSHG:-/usr/libexec/sshguard/sshg-parser}
F2B_FILTER=${F2B_FILTER:-/etc/fail2ban/filter.d/sshd.conf}

die() {
	echo "parse.sh: $*" >&2
	exit 1
}
[[ -f $GEN ]] || die "generator $GEN not found: set GEN=path/to/gen_authlog.py"
if [[ ! -x $SSHG ]]; then
	SSHG=$(dpkg -L sshguard 2>/dev/null | grep '/sshg-parser$' | head -n1) || true
	[[ -n $SSHG && -x $SSHG ]] || die "sshg-parser not found: install sshguard (scripts/setup.sh)"
fi
command -v fail2ban-regex >/dev/null || die "fail2ban-regex not found: install fail2ban (scripts/setup.sh)"
[[ -f $F2B_FILTER ]] || die "fail2ban filter $F2B_FILTER not found"
command -v taskset >/dev/null || die "taskset not found: install util-linux"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

python3 "$GEN" "$N" 1 >"$tmp/auth.log"
head -n "$F2B_N" "$tmp/auth.log" >"$tmp/auth-f2b.log"
go build -o "$tmp/parsebench" ./bench/authlog/parsebench
go build -o "$tmp/moat" ./cmd/moat
cat "$tmp/auth.log" "$tmp/auth-f2b.log" >/dev/null # into the page cache

. bench/lib/best.sh

read -r moat_t moat_cpu < <(best "$REPEAT" env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/parsebench" "$tmp/auth.log")
cp "$tmp/out" "$tmp/moat.out"
moat_parse=$(awk '$1 == "parse_seconds" { print $2 }' "$tmp/moat.out")
moat_parse_cpu=$(awk '$1 == "parse_cpu_seconds" { print $2 }' "$tmp/moat.out")
moat_attempts=$(awk '$1 == "attempts" { print $2 }' "$tmp/moat.out")
moat_aggr=$(awk '$1 == "aggressive" { print $2 }' "$tmp/moat.out")

# moat explain --json: the whole command an admin runs (issue 12's bar:
# 4x sshg-parser), with every default (an empty config), one JSON object
# per matched line.
: >"$tmp/empty.toml"
read -r explain_t explain_cpu < <(best "$REPEAT" env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/moat" --config "$tmp/empty.toml" explain --json "$tmp/auth.log")
explain_lines=$(wc -l <"$tmp/out")

read -r sshg_t sshg_cpu < <(best "$REPEAT" sh -c "taskset -c $CPU $SSHG < $tmp/auth.log")
sshg_attempts=$(wc -l <"$tmp/out")

read -r f2b_t f2b_cpu < <(best "$F2B_REPEAT" taskset -c "$CPU" fail2ban-regex "$tmp/auth-f2b.log" "$F2B_FILTER")
cp "$tmp/out" "$tmp/f2b.out"
f2b_attempts=$(awk '$1 == "Lines:" { for (i = 1; i <= NF; i++) if ($i == "matched,") print $(i - 1) }' "$tmp/f2b.out")
f2b_internal=$(sed -n 's/^\[processed in \([0-9.]*\) sec\]$/\1/p' "$tmp/f2b.out")

# moat on fail2ban's lines, to compare what each found there.
GOMAXPROCS=1 taskset -c "$CPU" "$tmp/parsebench" "$tmp/auth-f2b.log" >"$tmp/moat-f2b.out"
moat_f2b_attempts=$(awk '$1 == "attempts" { print $2 }' "$tmp/moat-f2b.out")
moat_f2b_closed=$(awk '$1 == "kind" && $2 == "preauth-closed" { print $3 }' "$tmp/moat-f2b.out")

rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }
moat_rate=$(rate "$N" "$moat_t")
moat_parse_rate=$(rate "$N" "$moat_parse")
sshg_rate=$(rate "$N" "$sshg_t")
explain_rate=$(rate "$N" "$explain_t")
f2b_rate=$(rate "$F2B_N" "$f2b_t")
moat_crate=$(rate "$N" "$moat_cpu")
moat_parse_crate=$(rate "$N" "$moat_parse_cpu")
explain_crate=$(rate "$N" "$explain_cpu")
sshg_crate=$(rate "$N" "$sshg_cpu")
f2b_crate=$(rate "$F2B_N" "$f2b_cpu")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
met() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { print (a / b >= r ? "met" : "NOT met") }'; }
comma() { awk -v s="$1" 'BEGIN { r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }; print s r }'; }

cat <<EOF
## sshd log parsing, one core ($(date -u '+%F %H:%M') UTC, $(nproc) vCPU, $(uname -r), load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))

Input: \`python3 $GEN $N 1\` ($(comma "$N") lines, seed 1); fail2ban on the first $(comma "$F2B_N").
Each tool pinned with \`taskset -c $CPU\` (moat also \`GOMAXPROCS=1\`); wall time of the
whole process and its CPU time (user + system, which other work on the machine does not
inflate), each the best of $REPEAT (fail2ban: $F2B_REPEAT).

| tool | command | lines | seconds | lines/s | CPU seconds | lines per CPU second | moat is (wall; CPU) | attempts found |
|---|---|---|---|---|---|---|---|---|
| moat | \`parsebench auth.log\` | $(comma "$N") | $moat_t | $(comma "$moat_rate") | $moat_cpu | $(comma "$moat_crate") | | $(comma "$moat_attempts") (+ $(comma "$moat_aggr") aggressive-only) |
| moat, parse loop only | (same run) | $(comma "$N") | $moat_parse | $(comma "$moat_parse_rate") | $moat_parse_cpu | $(comma "$moat_parse_crate") | | |
| moat | \`moat explain --json auth.log\` | $(comma "$N") | $explain_t | $(comma "$explain_rate") | $explain_cpu | $(comma "$explain_crate") | | $(comma "$explain_lines") lines of JSON |
| sshguard $(dpkg-query -W -f='${Version}' sshguard 2>/dev/null || true) | \`sshg-parser < auth.log\` | $(comma "$N") | $sshg_t | $(comma "$sshg_rate") | $sshg_cpu | $(comma "$sshg_crate") | $(ratio "$moat_rate" "$sshg_rate")x; $(ratio "$moat_crate" "$sshg_crate")x | $(comma "$sshg_attempts") |
| fail2ban $(dpkg-query -W -f='${Version}' fail2ban 2>/dev/null || true) | \`fail2ban-regex auth.log sshd.conf\` | $(comma "$F2B_N") | $f2b_t (own count: $f2b_internal) | $(comma "$f2b_rate") | $f2b_cpu | $(comma "$f2b_crate") | $(ratio "$moat_rate" "$f2b_rate")x; $(ratio "$moat_crate" "$f2b_crate")x | $(comma "$f2b_attempts") (moat on the same lines: $(comma "$moat_f2b_attempts"), of which $(comma "${moat_f2b_closed:-0}") "Connection closed by authenticating user ... [preauth]") |

Bars, by wall time (by CPU time): moat >= 2x sshg-parser: $(met "$moat_rate" "$sshg_rate" 2) ($(met "$moat_crate" "$sshg_crate" 2)); \`moat explain --json\` >= 4x sshg-parser: $(ratio "$explain_rate" "$sshg_rate")x, $(met "$explain_rate" "$sshg_rate" 4) ($(ratio "$explain_crate" "$sshg_crate")x, $(met "$explain_crate" "$sshg_crate" 4)); moat >= 50x fail2ban-regex: $(met "$moat_rate" "$f2b_rate" 50) ($(met "$moat_crate" "$f2b_crate" 50)); parse loop >= 5,000,000 lines/s: $(met "$moat_parse_rate" 5000000 1) ($(met "$moat_parse_crate" 5000000 1)).

moat's events by kind:

$(awk '$1 == "kind" { printf "- %s: %s\n", $2, $3 }' "$tmp/moat.out")
EOF
