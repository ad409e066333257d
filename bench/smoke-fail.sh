#!/bin/sh
# Run a benchmark that must fail: exit status 1 and PATTERN (a grep
# regular expression) on stderr. Proves that a check in the benchmark can
# fire, e.g. bench-echo's byte-for-byte echo check with --inject-mismatch.
# usage: smoke-fail.sh PATTERN BENCH [ARGS...]
set -u
pattern=$1
bench=$2
shift 2
err=$("$bench" "$@" 2>&1 >/dev/null)
status=$?
printf '%s\n' "$err"
[ "$status" -eq 77 ] && exit 77
if [ "$status" -ne 1 ]; then
	echo "smoke-fail: $bench exited with $status, expected 1" >&2
	exit 1
fi
if ! printf '%s\n' "$err" | grep -q -e "$pattern"; then
	echo "smoke-fail: stderr does not match \"$pattern\"" >&2
	exit 1
fi
exit 0
