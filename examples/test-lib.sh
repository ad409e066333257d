# Shared by the example test scripts (sourced, not run): failure
# reporting and watchdogs, so that a hang fails a test with a message
# instead of stalling it. The sourcing script sets $limit (seconds) and
# kills $limited_pid / $limited_dog in its own cleanup.

failed=0
fail() {
	echo "FAIL: $*"
	failed=1
}

# Kill process $1 after $limit seconds; the watchdog's id is left in $dog,
# and `kill "$dog"` stops it. It also ends by itself within 0.1 s of the
# process ending: a TERM that reaches a subshell before it has reset the
# caller's traps can be lost (dash), and a watchdog left sleeping holds the
# caller's saved stdout (dash keeps it on fd 10+ inside a redirected
# function call), so the test harness, which reads that pipe to its end,
# would wait out the whole limit.
watchdog() {
	(
		ticks=$((limit * 10))
		while kill -0 "$1" 2>/dev/null; do
			if [ "$ticks" -le 0 ]; then
				kill -KILL "$1"
				exit 0
			fi
			sleep 0.1
			ticks=$((ticks - 1))
		done
	) >/dev/null 2>&1 </dev/null &
	dog=$!
}

# limited COMMAND...: run COMMAND under a watchdog and set $status.
limited() {
	"$@" &
	limited_pid=$!
	watchdog "$limited_pid"
	limited_dog=$dog
	wait "$limited_pid"
	status=$?
	limited_pid=
	kill "$limited_dog" 2>/dev/null
	limited_dog=
	if [ "$status" -eq 137 ]; then
		echo "(killed after $limit s: $*)"
	fi
}
