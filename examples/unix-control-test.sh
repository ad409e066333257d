#!/bin/sh
# Test unix-control from outside: start the daemon in the background and
# talk to it with line-client, one command per connection.
#
# usage: unix-control-test.sh DAEMON LINE_CLIENT [WRAPPER...]
#   WRAPPER (valgrind and its options, say) runs the daemon; its words are
#   split on blanks, so they must not contain any.
#
# 1. ping, status, hash, help, an unknown command, a line too long; a
#    stuck client (half a line, then nothing) is answered "error: timed out"
#    while another client is served meanwhile; a second daemon on the same
#    path is refused; "quit" answers "bye", the daemon exits 0 and removes
#    its socket.
# 2. SIGTERM: the daemon exits 0 and removes its socket.
#
# Exit status: 0 pass, 1 fail, 77 skip (no io_uring).
set -u

if [ $# -lt 2 ]; then
	echo "usage: $0 DAEMON LINE_CLIENT [WRAPPER...]" >&2
	exit 1
fi
daemon=$1 line_client=$2
shift 2
wrapper=$*

# Every program gets a watchdog that kills it after $limit seconds, so that
# a hang fails the test with a message instead of stalling it.
limit=60

tmp=$(mktemp -d) || exit 1
sock=$tmp/ctl.sock
# Programs and watchdogs still running (not yet waited for, so their ids
# are still theirs). line-client has a timeout of its own.
daemon_pid= daemon_dog= stuck_pid= limited_pid= limited_dog=
cleanup() {
	for p in $daemon_dog $limited_dog; do
		kill "$p" 2>/dev/null
	done
	for p in $daemon_pid $stuck_pid $limited_pid; do
		kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# fail, watchdog, limited
# shellcheck source=test-lib.sh
. "$(dirname "$0")/test-lib.sh"

show_stderr() {
	if [ -s "$tmp/$1.err" ]; then
		echo "--- $1 stderr:"
		cat "$tmp/$1.err"
	fi
}

# start_daemon TIMEOUT_MS: start the daemon on $sock, its stdout on a FIFO
# read on descriptor 3, and wait for its first line.
start_daemon() {
	rm -f "$tmp/fifo"
	mkfifo "$tmp/fifo" || exit 1
	# Not under timeout(1): GNU timeout passes a SIGTERM on twice (to the
	# command and to its process group), and the second one may arrive
	# after the daemon has stopped watching SIGTERM.
	# shellcheck disable=SC2086 # $wrapper is a word list
	$wrapper "$daemon" --timeout-ms "$1" "$sock" >"$tmp/fifo" 2>"$tmp/daemon.err" &
	daemon_pid=$!
	watchdog "$daemon_pid"
	daemon_dog=$dog
	exec 3<"$tmp/fifo"
	: >"$tmp/daemon.out"
	if ! IFS= read -r line <&3; then
		wait "$daemon_pid"
		status=$?
		daemon_pid=
		kill "$daemon_dog" 2>/dev/null
		if [ "$status" -eq 77 ]; then
			echo "SKIP: the daemon exited 77: the environment cannot run it"
			cat "$tmp/daemon.err"
			exit 77
		fi
		fail "the daemon printed nothing and exited with status $status"
		show_stderr daemon
		exit 1
	fi
	if [ "$line" != "listening on $sock" ]; then
		fail "first line \"$line\", want \"listening on $sock\""
		exit 1
	fi
	if [ ! -S "$sock" ]; then
		fail "$sock is not a socket"
		exit 1
	fi
}

# Wait for the daemon to exit, keeping the rest of its output.
finish_daemon() {
	cat <&3 >>"$tmp/daemon.out"
	exec 3<&-
	wait "$daemon_pid"
	daemon_status=$?
	daemon_pid=
	kill "$daemon_dog" 2>/dev/null
	daemon_dog=
}

# ask WANT COMMAND: send COMMAND on a new connection; the reply must match
# the case pattern WANT and the daemon must close the connection.
ask() {
	"$line_client" "unix:$sock" "$2" >"$tmp/reply" 2>"$tmp/client.err"
	status=$?
	reply=$(cat "$tmp/reply")
	case $reply in
	$1) ;;
	*) fail "\"$2\": reply \"$reply\", want \"$1\"" ;;
	esac
	if [ "$status" -ne 0 ]; then
		fail "\"$2\": line-client exited with status $status"
		show_stderr client
	fi
}

# start_stuck: a client that sends half a line and waits. Returns once it
# is connected, so the daemon accepts it before any later connection.
start_stuck() {
	rm -f "$tmp/stuck.fifo"
	mkfifo "$tmp/stuck.fifo" || exit 1
	"$line_client" --no-newline --connected "unix:$sock" pi \
		>"$tmp/stuck.fifo" 2>"$tmp/stuck.err" &
	stuck_pid=$!
	exec 4<"$tmp/stuck.fifo"
	if ! IFS= read -r line <&4 || [ "$line" != connected ]; then
		fail "the stuck client did not connect"
		show_stderr stuck
		exit 1
	fi
}

# finish_stuck WANT: the stuck client's reply must be WANT, and the daemon
# must have closed the connection.
finish_stuck() {
	cat <&4 >"$tmp/stuck.out"
	exec 4<&-
	wait "$stuck_pid"
	stuck_status=$?
	stuck_pid=
	if [ "$stuck_status" -ne 0 ] || [ "$(cat "$tmp/stuck.out")" != "$1" ]; then
		fail "stuck client: status $stuck_status, reply \"$(cat "$tmp/stuck.out")\", want \"$1\""
		show_stderr stuck
	fi
}

printf 'hello, world\n' >"$tmp/hello.txt"
long=$(printf '%0300d' 0)

echo "--- 1: commands, a stuck client, then quit"
start_daemon 500
ask "pong" ping
ask "uptime [0-9]* s, served 1 command" status
ask "error: usage: hash FILE" hash
ask "error: line too long" "$long"
ask "commands: ping, status, hash FILE, quit" help
ask "fnv1a64 e60e7ee648829675, 13 bytes" "hash $tmp/hello.txt"
ask "error: No such file or directory" "hash $tmp/missing"
ask "error: not a regular file" "hash $tmp"
ask "error: unknown command" FROB
# The line too long was not served.
ask "uptime [0-9]* s, served 8 commands" status
# A stuck client holds only its own task: ping is answered meanwhile.
start_stuck
ask "pong" ping
finish_stuck "error: timed out"

# shellcheck disable=SC2086
limited $wrapper "$daemon" "$sock" >"$tmp/second.out" 2>"$tmp/second.err"
if [ "$status" -ne 1 ] || ! grep -q "Address already in use" "$tmp/second.err"; then
	fail "a second daemon on the same socket: status $status, want 1 and EADDRINUSE"
	show_stderr second
fi

ask "bye" quit
finish_daemon
if [ "$daemon_status" -ne 0 ]; then
	fail "daemon exited with status $daemon_status after quit, want 0"
	show_stderr daemon
fi
if [ -e "$sock" ]; then
	fail "the daemon left $sock behind"
fi
for want in "connection 1: ping" "connection 11: no command within 500 ms, dropped" \
	    "connection 12: ping" "connection 13: quit" "stopping: quit command" \
	    "stopped after 13 connections"; do
	if ! grep -qxF "$want" "$tmp/daemon.out"; then
		fail "the daemon did not log \"$want\""
	fi
done

echo "--- 2: SIGTERM with a client connected"
# A long timeout, so that SIGTERM is what ends the stuck client.
start_daemon 60000
start_stuck
ask "pong" ping
kill -TERM "$daemon_pid"
finish_daemon
if [ "$daemon_status" -ne 0 ]; then
	fail "daemon exited with status $daemon_status after SIGTERM, want 0"
	show_stderr daemon
fi
# Cancelled while it waited for the line: closed without a reply.
finish_stuck ""
if [ -e "$sock" ]; then
	fail "the daemon left $sock behind"
fi
for want in "connection 2: ping" "stopping: signal" "stopped after 2 connections"; do
	if ! grep -qxF "$want" "$tmp/daemon.out"; then
		fail "the daemon did not log \"$want\""
	fi
done

if [ "$failed" -ne 0 ]; then
	echo "--- daemon stdout:"
	cat "$tmp/daemon.out"
	exit 1
fi
echo "PASS"
exit 0
