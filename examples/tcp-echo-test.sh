#!/bin/sh
# Run tcp-echo-server and tcp-echo-client together and check both.
#
# usage: tcp-echo-test.sh SERVER CLIENT LINE_CLIENT [WRAPPER...]
#   WRAPPER (valgrind and its options, say) runs the server and the client;
#   its words are split on blanks, so they must not contain any.
#
# 1. A server with --max-conns 2. The client with three messages, one of
#    60000 bytes (TCP may deliver it in pieces; the server's readline
#    assembles them): "echoed 3 messages". A second client with
#    a 100000-byte line, over the server's 65536-byte limit: it is answered
#    "error: line longer than 65536 bytes" and hung up on. The server logs
#    both and exits 0 by itself; a third client then finds nothing
#    listening and fails with "Connection refused".
# 2. SIGTERM: a server with an idle connection open (line-client) and a
#    finished one; SIGTERM must cancel the idle connection's task, close it
#    (line-client sees the close) and exit 0.
#
# Exit status: 0 pass, 1 fail, 77 skip (no io_uring).
set -u

if [ $# -lt 3 ]; then
	echo "usage: $0 SERVER CLIENT LINE_CLIENT [WRAPPER...]" >&2
	exit 1
fi
server=$1 client=$2 line_client=$3
shift 3
wrapper=$*

# Every program gets a watchdog that kills it after $limit seconds, so that
# a hang fails the test with a message instead of stalling it.
limit=60

tmp=$(mktemp -d) || exit 1
# Programs and watchdogs still running (not yet waited for, so their ids
# are still theirs).
server_pid= server_dog= idle_pid= idle_dog= limited_pid= limited_dog=
cleanup() {
	for p in $server_dog $idle_dog $limited_dog; do
		kill "$p" 2>/dev/null
	done
	for p in $server_pid $idle_pid $limited_pid; do
		kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# fail, watchdog, limited
# shellcheck source=test-lib.sh
. "$(dirname "$0")/test-lib.sh"

# Start the server with the given arguments, its stdout on a FIFO that we
# read on descriptor 3 (a file would make us poll for its lines). Sets
# server_pid and port.
start_server() {
	rm -f "$tmp/fifo"
	mkfifo "$tmp/fifo" || exit 1
	# Not under timeout(1): GNU timeout passes a SIGTERM on twice (to the
	# command and to its process group), and the second one may arrive
	# after the server has stopped watching SIGTERM.
	# shellcheck disable=SC2086 # $wrapper is a word list
	$wrapper "$server" "$@" >"$tmp/fifo" 2>"$tmp/server.err" &
	server_pid=$!
	watchdog "$server_pid"
	server_dog=$dog
	exec 3<"$tmp/fifo"
	: >"$tmp/server.out"
	port=
	if ! IFS= read -r line <&3; then
		wait "$server_pid"
		status=$?
		server_pid=
		kill "$server_dog" 2>/dev/null
		if [ "$status" -eq 77 ]; then
			echo "SKIP: the server exited 77: the environment cannot run it"
			cat "$tmp/server.err"
			exit 77
		fi
		fail "the server printed nothing and exited with status $status"
		show_stderr server
		exit 1
	fi
	case $line in
	"listening on 127.0.0.1:"*[!0-9]*) ;;
	"listening on 127.0.0.1:"?*) port=${line#listening on 127.0.0.1:} ;;
	esac
	if [ -z "$port" ]; then
		fail "first line \"$line\", want \"listening on 127.0.0.1:PORT\""
		exit 1
	fi
	echo "server listening on port $port"
}

# Read the server's lines into server.out until one matches a pattern.
wait_for_line() {
	while IFS= read -r line <&3; do
		printf '%s\n' "$line" >>"$tmp/server.out"
		case $line in
		$1) return 0 ;;
		esac
	done
	fail "the server ended before printing a line like \"$1\""
	return 1
}

# Wait for the server to exit, keeping the rest of its output.
finish_server() {
	cat <&3 >>"$tmp/server.out"
	exec 3<&-
	wait "$server_pid"
	server_status=$?
	server_pid=
	kill "$server_dog" 2>/dev/null
	server_dog=
}

show_stderr() {
	if [ -s "$tmp/$1.err" ]; then
		echo "--- $1 stderr:"
		cat "$tmp/$1.err"
	fi
}

# The client's port number changes from run to run.
check_server_output() {
	sed 's/from 127\.0\.0\.1:[0-9]*$/from 127.0.0.1:CLIENTPORT/' "$tmp/server.out" \
		>"$tmp/server.masked"
	if ! cmp -s "$tmp/expected" "$tmp/server.masked"; then
		fail "server output differs (- expected, + actual):"
		diff -u "$tmp/expected" "$tmp/server.masked" | sed 1,2d
	fi
}

run_client() {
	# shellcheck disable=SC2086
	limited $wrapper "$client" "$@" >"$tmp/client.out" 2>"$tmp/client.err"
	client_status=$status
}

long=$(printf '%060000d' 0)
too_long=$(printf '%0100000d' 0)

echo "--- 1: --max-conns 2, and a line over the limit"
start_server --max-conns 2
run_client "$port" hello "second message" "$long"
if [ "$client_status" -ne 0 ]; then
	fail "client exited with status $client_status, want 0"
	show_stderr client
fi
if [ "$(cat "$tmp/client.out")" != "echoed 3 messages" ]; then
	fail "client printed \"$(cat "$tmp/client.out")\", want \"echoed 3 messages\""
fi
# Connection 1 must be over before 2 starts, for the log's order.
wait_for_line "connection 1 closed *" || exit 1
run_client "$port" "$too_long"
if [ "$client_status" -ne 1 ]; then
	fail "client with a line over the limit exited with status $client_status, want 1"
fi
want='tcp-echo-client: message 1: the server answered "error: line longer than 65536 bytes"'
# (A wrapper such as valgrind adds lines of its own.)
if ! grep -qxF "$want" "$tmp/client.err"; then
	fail "client with a line over the limit did not say: $want"
	show_stderr client
fi
finish_server
if [ "$server_status" -ne 0 ]; then
	fail "server exited with status $server_status, want 0"
	show_stderr server
fi
cat >"$tmp/expected" <<EOF
connection 1 from 127.0.0.1:CLIENTPORT
connection 1 closed (client closed): 3 lines echoed
connection 2 from 127.0.0.1:CLIENTPORT
connection 2 closed (line too long): 0 lines echoed
served 2 connections
EOF
check_server_output

# The server has closed its socket: nothing listens on the port now (short
# of another program taking it in this instant).
run_client "$port" hello
if [ "$client_status" -ne 1 ]; then
	fail "client to a closed port exited with status $client_status, want 1"
fi
if ! grep -q "connect to 127.0.0.1:$port: Connection refused" "$tmp/client.err"; then
	fail "client to a closed port did not report \"Connection refused\""
	show_stderr client
fi

echo "--- 2: SIGTERM with a connection open"
start_server
"$line_client" "tcp:$port" >"$tmp/idle.out" 2>"$tmp/idle.err" &
idle_pid=$!
watchdog "$idle_pid"
idle_dog=$dog
wait_for_line "connection 1 from *" || exit 1
run_client "$port" one two
if [ "$client_status" -ne 0 ] || [ "$(cat "$tmp/client.out")" != "echoed 2 messages" ]; then
	fail "second client: status $client_status, output \"$(cat "$tmp/client.out")\""
	show_stderr client
fi
# Signal only once connection 2 is over, so that it ends the same way on
# every run.
wait_for_line "connection 2 closed *" || exit 1
kill -TERM "$server_pid"
finish_server
if [ "$server_status" -ne 0 ]; then
	fail "server exited with status $server_status after SIGTERM, want 0"
	show_stderr server
fi
cat >"$tmp/expected" <<EOF
connection 1 from 127.0.0.1:CLIENTPORT
connection 2 from 127.0.0.1:CLIENTPORT
connection 2 closed (client closed): 2 lines echoed
signal received, shutting down
connection 1 closed (server shutting down): 0 lines echoed
served 2 connections
EOF
check_server_output
wait "$idle_pid"
idle_status=$?
idle_pid=
kill "$idle_dog" 2>/dev/null
idle_dog=
if [ "$idle_status" -ne 0 ]; then
	fail "the idle connection was not closed by the server (line-client status $idle_status)"
	show_stderr idle
fi

if [ "$failed" -ne 0 ]; then
	exit 1
fi
echo "PASS"
exit 0
