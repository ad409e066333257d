#!/bin/sh
# Run asyncflag-bench for a few iterations of every scenario and check what
# it wrote: the table on stdout, the JSON (valid, every scenario and path
# present, every ratio the quotient of the figures next to it), the
# cyclictest histogram (bucket lines sum to each column's Total, and Total
# plus overflows is the JSON's sample count) and, where gnuplot exists, a
# non-empty plot. No figure is judged: nothing here asserts a timing.
# usage: smoke-tool.sh ASYNCFLAG-BENCH [ARGS...]
set -u
bench=$1
shift
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() {
	echo "smoke-tool: $*" >&2
	exit 1
}

"$bench" --iterations 20 --fanout-max 1000 --json "$dir/r.json" \
	--histogram "$dir/r.hist" --plot "$dir/r.svg" "$@" >"$dir/table" 2>"$dir/err"
status=$?
cat "$dir/table"
cat "$dir/err" >&2
[ "$status" -eq 77 ] && exit 77
[ "$status" -eq 0 ] || fail "exited with $status"

# The table: the header, the column titles and a row for every scenario.
grep -q '^asyncflag-bench: libasyncflag ' "$dir/table" || fail "no header line"
grep -q '^scenario  *path  *n  *min  *p50  *p90  *p99  *p99.9  *max' "$dir/table" ||
	fail "no column titles"
for s in wake-cold wake-hot signal gpio event switch fanout echo spawn; do
	grep -q "^$s " "$dir/table" || fail "no row for $s in the table"
done

command -v jq >/dev/null 2>&1 || { echo "smoke-tool: jq missing, JSON not checked"; exit 77; }
j=$dir/r.json
jq -e . "$j" >/dev/null || fail "the JSON does not parse"
# gpio-irq and gpio-edge come with gpio when the library has the GPIO API.
jq -e '[.scenarios[].name | select(. != "gpio-irq" and . != "gpio-edge")] ==
	["wake-cold","wake-hot","signal","gpio","event","switch","fanout","echo","spawn"]' \
	"$j" >/dev/null || fail "not every scenario is in the JSON"
jq -e '(.scenarios[] | select(.name == "gpio") | .ran) ==
	([.scenarios[].name] | index("gpio-irq") != null and index("gpio-edge") != null)' \
	"$j" >/dev/null || fail "gpio ran, but gpio-irq or gpio-edge is missing (or the reverse)"
# Every path the scenario promises, measured or said to be unavailable.
check_paths() {
	jq -e --arg s "$1" --argjson want "$2" \
		'.scenarios[] | select(.name == $s) | .ran and ([.paths[].path] == $want)' \
		"$j" >/dev/null || fail "scenario $1: paths are not $2"
}
check_paths wake-cold '["af_flag","eventfd","condvar","io_uring-poll","io_uring-futex","uv_async"]'
check_paths wake-hot '["af_flag","spin"]'
check_paths signal '["af_signal","signalfd","io_uring-signalfd","af_signal-handler","uv_signal","af_flag-signal-loop"]'
check_paths event '["af_event","swapcontext","uv_idle"]'
check_paths switch '["af_event","swapcontext"]'
check_paths spawn '["af_task x100","af_task x10^4","own mapping","pthread"]'
if jq -e '.scenarios[] | select(.name == "gpio") | .ran' "$j" >/dev/null; then
	check_paths gpio '["af_pin","pipe"]'
	check_paths gpio-irq '["af_pin_irq","pipe"]'
	check_paths gpio-edge '["coroutine","interrupt"]'
else
	jq -e '.scenarios[] | select(.name == "gpio") | (.skipped | length) > 0' "$j" >/dev/null ||
		fail "gpio did not run and does not say why"
fi
# An unavailable path says why; an available one has its samples.
jq -e '[.scenarios[] | select(.paths) | .paths[] |
	if .available then .n > 0 and .min <= .p50 and .p50 <= .p90 and .p90 <= .p99 and
		.p99 <= .p99_9 and .p99_9 <= .max
	else (.why | length) > 0 end] | all' "$j" >/dev/null ||
	fail "a path has no samples, unordered percentiles, or no reason for being missing"
# Ratios: the measured path's percentile over the path's own, both as printed
# (6 significant digits each, so equal to 1e-4).
jq -e '[.scenarios[] | select(.paths) | .paths[0] as $m | .paths[1:][] |
	select(.available and $m.available and .ratio_p50 != null) |
	((.ratio_p50 - $m.p50 / .p50) | fabs) <= 1e-4 * ($m.p50 / .p50) and
	((.ratio_p90 - $m.p90 / .p90) | fabs) <= 1e-4 * ($m.p90 / .p90)] | all' "$j" >/dev/null ||
	fail "a ratio is not the quotient of the figures next to it"
jq -e '[.scenarios[] | select(.baseline) | . as $s |
	($s.paths[] | select(.path == $s.baseline)) as $b |
	($s.ratio_p50 == $b.ratio_p50)] | all' "$j" >/dev/null ||
	fail "a scenario's ratio is not its baseline's"
jq -e '.scenarios[] | select(.name == "fanout") | .fanout | length > 0 and all(.parked > 0)' \
	"$j" >/dev/null || fail "fanout: no sizes, or none parked"
jq -e '.scenarios[] | select(.name == "echo") | (.ran | not) or (.bench_echo.results | length > 0)' \
	"$j" >/dev/null || fail "echo: bench-echo's results are missing"

# The histogram, as cyclictest -h writes it.
h=$dir/r.hist
cols=$(grep -c '^# Thread [0-9]* = ' "$h")
want=$(jq '[.scenarios[] | select(.paths) | .paths[] | select(.available)] | length' "$j")
[ "$cols" -eq "$want" ] || fail "histogram: $cols columns for $want measured paths"
grep -q '^# Histogram$' "$h" || fail "histogram: no '# Histogram' line"
grep -v '^#' "$h" | grep -qvE '^[0-9]{6} [0-9]{6}(	[0-9]{6})*$' &&
	fail "histogram: a bucket line is not '%06d %06lu[\\t%06lu...]'"
for tag in 'Total:' 'Min Latencies:' 'Avg Latencies:' 'Max Latencies:' 'Histogram Overflows:'; do
	grep -q "^# $tag" "$h" || fail "histogram: no '# $tag' line"
done
sums=$(grep -v '^#' "$h" | awk '{ for (i = 2; i <= NF; i++) s[i - 1] += $i }
	END { for (i = 1; i <= NF - 1; i++) printf "%d ", s[i] }')
totals=$(sed -n 's/^# Total: //p' "$h" | awk '{ for (i = 1; i <= NF; i++) printf "%d ", $i }')
[ "$sums" = "$totals" ] || fail "histogram: bucket sums ($sums) are not the totals ($totals)"
over=$(sed -n 's/^# Histogram Overflows: //p' "$h")
ns=$(jq -r '[.scenarios[] | select(.paths) | .paths[] | select(.available) | .n] | join(" ")' "$j")
got=$(echo "$totals|$over" | awk -F'|' '{ n = split($1, t, " "); split($2, o, " ");
	for (i = 1; i <= n; i++) printf "%d ", t[i] + o[i] }')
[ "$got" = "$ns " ] || fail "histogram: totals plus overflows ($got) are not the sample counts ($ns)"

# The plot, where gnuplot exists; where not, the tool says how to get it.
if command -v gnuplot >/dev/null 2>&1; then
	[ -s "$dir/r.svg" ] || fail "--plot wrote no file"
	grep -q '<svg' "$dir/r.svg" || fail "--plot did not write an SVG"
else
	grep -q 'apt install gnuplot' "$dir/err" || fail "no hint on how to get gnuplot"
fi
# Without gnuplot on the PATH: a hint, no plot, and the run still succeeds.
PATH=/nonexistent "$bench" --scenario event --iterations 5 --plot "$dir/none.svg" \
	>/dev/null 2>"$dir/err2" || fail "a run without gnuplot exited with $?"
grep -q 'apt install gnuplot' "$dir/err2" || fail "no hint on how to get gnuplot"
[ -e "$dir/none.svg" ] && fail "a plot file appeared without gnuplot"
echo "smoke-tool: table, JSON, histogram and plot check out"
