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
# and `kill "$dog"` stops it (and its sleep: a signal ends a wait at once).
watchdog() {
	(
		trap 'kill "$sleeper"; exit 0' TERM
		sleep "$limit" &
		sleeper=$!
		wait "$sleeper" && kill -KILL "$1"
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
