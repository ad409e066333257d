#!/bin/sh
# Run an example and compare its stdout, byte for byte, with the expected
# output; print a diff and the example's stderr when anything is off.
#
# usage: check-example.sh [OPTION...] EXPECTED COMMAND [ARG...]
#   --gap MIN_MS MAX_MS  the second line of output must arrive at least
#                        MIN_MS after the command started, and less than
#                        MAX_MS after the first line
#   --status N           expect exit status N (default 0)
#   --stderr-has TEXT    stderr must contain TEXT
#   --skip REASON        do not run; report a skip with REASON
#
# Exit status: 0 pass, 1 fail, 77 skip. An example exits 77 when io_uring is
# unavailable; unless --status asks for that, this reports a skip (meson reads
# 77 as one) with the example's explanation.
set -u

min_gap= max_gap= want_status=0 stderr_has=
while [ $# -gt 0 ]; do
	case $1 in
	--gap) min_gap=$2 max_gap=$3; shift 3 ;;
	--status) want_status=$2; shift 2 ;;
	--stderr-has) stderr_has=$2; shift 2 ;;
	--skip) echo "SKIP: $2"; exit 77 ;;
	*) break ;;
	esac
done
if [ $# -lt 2 ]; then
	echo "usage: $0 [OPTION...] EXPECTED COMMAND [ARG...]" >&2
	exit 1
fi
expected=$1
shift

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# Milliseconds since the epoch, or nothing where date lacks %N (not POSIX;
# GNU and busybox date have it): the gap check then fails rather than pass
# without measuring.
now_ms() {
	ns=$(date +%s%N)
	case $ns in
	*[!0-9]*|'') echo ;;
	*) echo $((ns / 1000000)) ;;
	esac
}

# The example writes into a FIFO so that its exit status stays ours to read
# (a plain pipeline would lose it without pipefail); tee keeps its exact
# bytes, and the loop stamps each line as it arrives.
mkfifo "$tmp/fifo" || exit 1
# The lower bound is measured from before the start: every delay in taking
# a stamp (a loaded machine forking date late) can then only lengthen what
# we measure, never shorten it below what the program really waited.
t0=$(now_ms)
"$@" >"$tmp/fifo" 2>"$tmp/stderr" &
pid=$!
tee "$tmp/stdout" <"$tmp/fifo" | while IFS= read -r _; do
	now_ms
done >"$tmp/times"
wait "$pid"
status=$?

show_stderr() {
	if [ -s "$tmp/stderr" ]; then
		echo "--- stderr:"
		cat "$tmp/stderr"
	fi
}

if [ "$status" -eq 77 ] && [ "$want_status" -ne 77 ]; then
	echo "SKIP: $* exited 77: the environment cannot run it"
	show_stderr
	exit 77
fi
failed=0
if [ "$status" -ne "$want_status" ]; then
	echo "FAIL: $* exited with status $status, want $want_status"
	failed=1
fi
if ! cmp -s "$expected" "$tmp/stdout"; then
	echo "FAIL: stdout differs from $expected (- expected, + actual):"
	diff -u "$expected" "$tmp/stdout" | sed 1,2d
	failed=1
fi
if [ -n "$stderr_has" ] && ! grep -qF -- "$stderr_has" "$tmp/stderr"; then
	echo "FAIL: stderr does not contain \"$stderr_has\""
	failed=1
fi
if [ -n "$min_gap" ]; then
	t1=$(sed -n 1p "$tmp/times") t2=$(sed -n 2p "$tmp/times")
	if [ -z "$t1" ] || [ -z "$t2" ]; then
		echo "FAIL: could not time the first two lines (two lines of output and date +%s%N needed)"
		failed=1
	else
		since_start=$((t2 - t0)) gap=$((t2 - t1))
		echo "the second line came ${since_start} ms after the start (want >= ${min_gap})" \
			"and ${gap} ms after the first (want < ${max_gap})"
		if [ "$since_start" -lt "$min_gap" ] || [ "$gap" -ge "$max_gap" ]; then
			echo "FAIL: gap out of range"
			failed=1
		fi
	fi
fi
if [ "$failed" -ne 0 ]; then
	show_stderr
	exit 1
fi
echo "PASS: $*"
exit 0
