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

now() { date +%s.%N; }

# best CMD...: runs CMD REPEAT times (stdout to $tmp/out), prints the
# shortest wall time in seconds.
best() {
	local reps=$1 b="" t0 t1 d
	shift
	for ((i = 0; i < reps; i++)); do
		t0=$(now)
		"$@" >"$tmp/out" 2>&1
		t1=$(now)
		d=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
		if [[ -z $b ]] || awk -v d="$d" -v b="$b" 'BEGIN { exit !(d < b) }'; then
			b=$d
		fi
	done
	echo "$b"
}

moat_t=$(best "$REPEAT" env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/parsebench" "$tmp/auth.log")
cp "$tmp/out" "$tmp/moat.out"
moat_parse=$(awk '$1 == "parse_seconds" { print $2 }' "$tmp/moat.out")
moat_attempts=$(awk '$1 == "attempts" { print $2 }' "$tmp/moat.out")
moat_aggr=$(awk '$1 == "aggressive" { print $2 }' "$tmp/moat.out")

# moat explain --json: the whole command an admin runs (issue 12's bar:
# 4x sshg-parser), with every default (an empty config), one JSON object
# per matched line.
: >"$tmp/empty.toml"
explain_t=$(best "$REPEAT" env GOMAXPROCS=1 taskset -c "$CPU" "$tmp/moat" --config "$tmp/empty.toml" explain --json "$tmp/auth.log")
explain_lines=$(wc -l <"$tmp/out")

sshg_t=$(best "$REPEAT" sh -c "taskset -c $CPU $SSHG < $tmp/auth.log")
sshg_attempts=$(wc -l <"$tmp/out")

f2b_t=$(best "$F2B_REPEAT" taskset -c "$CPU" fail2ban-regex "$tmp/auth-f2b.log" "$F2B_FILTER")
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
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
comma() { awk -v s="$1" 'BEGIN { r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }; print s r }'; }

cat <<EOF
## sshd log parsing, one core ($(date +%F), $(nproc) vCPU, $(uname -r))

Input: \`python3 $GEN $N 1\` ($(comma "$N") lines, seed 1); fail2ban on the first $(comma "$F2B_N").
Each tool pinned with \`taskset -c $CPU\` (moat also \`GOMAXPROCS=1\`); wall time of the
whole process, best of $REPEAT (fail2ban: $F2B_REPEAT).

| tool | command | lines | seconds | lines/s | moat is | attempts found |
|---|---|---|---|---|---|---|
| moat | \`parsebench auth.log\` | $(comma "$N") | $moat_t | $(comma "$moat_rate") | | $(comma "$moat_attempts") (+ $(comma "$moat_aggr") aggressive-only) |
| moat, parse loop only | (same run) | $(comma "$N") | $moat_parse | $(comma "$moat_parse_rate") | | |
| moat | \`moat explain --json auth.log\` | $(comma "$N") | $explain_t | $(comma "$explain_rate") | | $(comma "$explain_lines") lines of JSON |
| sshguard $(dpkg-query -W -f='${Version}' sshguard 2>/dev/null || true) | \`sshg-parser < auth.log\` | $(comma "$N") | $sshg_t | $(comma "$sshg_rate") | $(ratio "$moat_rate" "$sshg_rate")x faster | $(comma "$sshg_attempts") |
| fail2ban $(dpkg-query -W -f='${Version}' fail2ban 2>/dev/null || true) | \`fail2ban-regex auth.log sshd.conf\` | $(comma "$F2B_N") | $f2b_t (own count: $f2b_internal) | $(comma "$f2b_rate") | $(ratio "$moat_rate" "$f2b_rate")x faster | $(comma "$f2b_attempts") (moat on the same lines: $(comma "$moat_f2b_attempts"), of which $(comma "${moat_f2b_closed:-0}") "Connection closed by authenticating user ... [preauth]") |

Bars: moat >= 2x sshg-parser: $(awk -v r="$(ratio "$moat_rate" "$sshg_rate")" 'BEGIN { print (r >= 2 ? "met" : "NOT met") }'); \`moat explain --json\` >= 4x sshg-parser: $(ratio "$explain_rate" "$sshg_rate")x, $(awk -v r="$(ratio "$explain_rate" "$sshg_rate")" 'BEGIN { print (r >= 4 ? "met" : "NOT met") }'); moat >= 50x fail2ban-regex: $(awk -v r="$(ratio "$moat_rate" "$f2b_rate")" 'BEGIN { print (r >= 50 ? "met" : "NOT met") }').

moat's events by kind:

$(awk '$1 == "kind" { printf "- %s: %s\n", $2, $3 }' "$tmp/moat.out")
EOF
