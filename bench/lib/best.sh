# Sourced by the benches that time whole commands. It needs $tmp, a
# scratch directory.
# best REPS CMD...: runs CMD REPS times (its output to $tmp/out), prints the
# shortest wall time and the smallest CPU time (user + system, the
# command's and its children's) in seconds. On a machine shared with other
# work the wall time counts the time others held the core; the CPU time
# does not, so both are reported.
best() {
	local reps=$1 bw="" bc="" w u s c
	shift
	for ((i = 0; i < reps; i++)); do
		read -r w u s < <({
			TIMEFORMAT='%R %U %S'
			time "$@" >"$tmp/out" 2>&1
		} 2>&1)
		c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.3f", u + s }')
		if [[ -z $bw ]] || awk -v d="$w" -v b="$bw" 'BEGIN { exit !(d < b) }'; then
			bw=$w
		fi
		if [[ -z $bc ]] || awk -v d="$c" -v b="$bc" 'BEGIN { exit !(d < b) }'; then
			bc=$c
		fi
	done
	echo "$bw $bc"
}
