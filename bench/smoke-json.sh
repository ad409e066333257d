#!/bin/sh
# Run a benchmark with --json and check that it printed one well-formed JSON
# object with results in it. Times are not looked at: this only proves the
# benchmark runs.
# usage: smoke-json.sh BENCH [ARGS...]
set -u
bench=$1
shift
out=$("$bench" "$@" --json)
status=$?
[ "$status" -eq 77 ] && exit 77
if [ "$status" -ne 0 ]; then
	echo "smoke-json: $bench exited with $status" >&2
	exit 1
fi
printf '%s\n' "$out"
if command -v jq >/dev/null 2>&1; then
	printf '%s\n' "$out" | jq -e '.bench and .version and (.results or .sleep or .busy or .storm)' >/dev/null || {
		echo "smoke-json: output is not the expected JSON" >&2
		exit 1
	}
elif command -v python3 >/dev/null 2>&1; then
	printf '%s\n' "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(0 if "bench" in d else 1)' || {
		echo "smoke-json: output is not the expected JSON" >&2
		exit 1
	}
else
	case $out in
	'{'*'}') ;;
	*) echo "smoke-json: output does not look like JSON" >&2; exit 1 ;;
	esac
fi
