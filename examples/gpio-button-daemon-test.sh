#!/bin/sh
# Test gpio-button-daemon from outside, on its simulated chip: the edges it
# prints line by line (gpiomon's format, how many, alternating, strictly
# later each time), the LED it toggles, debounce of a bouncing button,
# active-low, a clean exit on SIGTERM with the lines released, --help, and
# the errors a user meets first (no such line, no such chip, bad usage).
#
# usage: gpio-button-daemon-test.sh DAEMON [WRAPPER...]
#   WRAPPER (valgrind and its options, say) runs the daemon; its words are
#   split on blanks, so they must not contain any.
#
# With AF_TEST_GPIOCHIP=/dev/gpiochipN and AF_TEST_GPIOSIM_SYSFS set as for
# tests/test-gpio.c (a gpio-sim chip of the kernel's, lines aftest0 ..
# aftest15; the test guests set them), it runs the daemon on that chip
# instead: presses made by writing sim_gpio<i>/pull, the LED read from
# sim_gpio<i>/value, debounce done by the kernel, a line another daemon
# holds. Busybox sh is enough.
#
# Exit status: 0 pass, 1 fail, 77 skip (no io_uring).
set -u

if [ $# -lt 1 ]; then
	echo "usage: $0 DAEMON [WRAPPER...]" >&2
	exit 1
fi
daemon=$1
shift
wrapper=$*

# Every run gets a watchdog that kills it after $limit seconds, so that a
# hang fails the test with a message instead of stalling it.
limit=120

tmp=$(mktemp -d) || exit 1
daemon_pid= daemon_dog= limited_pid= limited_dog=
cleanup() {
	for p in $daemon_dog $limited_dog; do
		kill "$p" 2>/dev/null
	done
	for p in $daemon_pid $limited_pid; do
		kill -KILL "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# fail, watchdog, limited
# shellcheck source=test-lib.sh
. "$(dirname "$0")/test-lib.sh"

tab=$(printf '\t')

show() {
	for f in "$@"; do
		if [ -s "$tmp/$f" ]; then
			echo "--- $f:"
			cat "$tmp/$f"
		fi
	done
}

# run NAME ARG...: run the daemon to its end; stdout in $tmp/NAME.out,
# stderr in $tmp/NAME.err, exit status in $status. A run that exits 77
# (no io_uring) skips the whole test.
run() {
	name=$1
	shift
	# shellcheck disable=SC2086 # $wrapper is a word list
	limited $wrapper "$daemon" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	if [ "$status" -eq 77 ]; then
		echo "SKIP: the daemon exited 77: the environment cannot run it"
		cat "$tmp/$name.err"
		exit 77
	fi
}

# check_edges NAME N LINE: $tmp/NAME.out must be N edges of line LINE (as
# gpiomon quotes it), in gpiomon's format, alternating from falling, each
# stamped strictly later than the one before.
check_edges() {
	name=$1 want=$2 line=$3
	n=0 prev_ns= edge=
	while IFS= read -r l; do
		n=$((n + 1))
		if [ "$edge" = falling ]; then edge=rising; else edge=falling; fi
		# <seconds>.<nine digits> TAB edge TAB line, nothing else.
		ts=${l%%"$tab"*}
		rest=${l#*"$tab"}
		sec=${ts%.*} nsec=${ts#*.}
		case $sec in ''|*[!0-9]*) fail "$name: line $n: seconds \"$sec\" in \"$l\""; continue ;; esac
		case $nsec in
		[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;;
		*) fail "$name: line $n: nanoseconds \"$nsec\" are not nine digits in \"$l\""; continue ;;
		esac
		if [ "$rest" != "$edge$tab$line" ]; then
			fail "$name: line $n: \"$rest\" after the timestamp, want \"$edge<TAB>$line\""
		fi
		# Strictly later: compare as nanoseconds (no overflow: the
		# monotonic clock's seconds are far below 2^33).
		ns=$(( sec * 1000000000 + $(echo "$nsec" | sed 's/^0*\(.\)/\1/') ))
		if [ -n "$prev_ns" ] && [ "$ns" -le "$prev_ns" ]; then
			fail "$name: line $n: timestamp $ts is not after the previous one"
		fi
		prev_ns=$ns
	done <"$tmp/$name.out"
	if [ "$n" -ne "$want" ]; then
		fail "$name: $n edges printed, want $want"
	fi
}

# has NAME TEXT...: each TEXT must be a whole line of $tmp/NAME.err.
has() {
	name=$1
	shift
	for want in "$@"; do
		if ! grep -qxF -- "$want" "$tmp/$name.err"; then
			fail "$name: stderr has no line \"$want\""
		fi
	done
}

# exits NAME STATUS: the run must have exited with STATUS.
exits() {
	if [ "$status" -ne "$2" ]; then
		fail "$1: exit status $status, want $2"
	fi
}

released='gpio-button-daemon: released line gpio-button-daemon 0 "GPIO17"'
released_led='gpio-button-daemon: released line gpio-button-daemon 1 "GPIO27"'

# ---- on a gpio-sim chip of the kernel's -------------------------------------

# press I LEVEL...: drive line I to each LEVEL (1 high, 0 low) in turn.
press() {
	local i=$1 v p
	shift
	for v in "$@"; do
		if [ "$v" -eq 1 ]; then p=pull-up; else p=pull-down; fi
		echo "$p" >"$AF_TEST_GPIOSIM_SYSFS/sim_gpio$i/pull" || fail "cannot pull line $i"
	done
}

level() {
	cat "$AF_TEST_GPIOSIM_SYSFS/sim_gpio$1/value"
}

# until_true WHAT COMMAND...: poll COMMAND every 20 ms for 10 s (an
# emulated guest is slow); fail with WHAT if it never succeeds.
until_true() {
	local what=$1 tries=500
	shift
	while ! "$@"; do
		tries=$((tries - 1))
		if [ "$tries" -eq 0 ]; then
			fail "$what"
			return 1
		fi
		sleep 0.02
	done
}

lines_at_least() {
	[ "$(wc -l <"$tmp/$1.out")" -ge "$2" ]
}
led_is() {
	[ "$(level "$1")" = "$2" ]
}
ready() {
	grep -q '^gpio-button-daemon: button ' "$tmp/$1.err" || ! kill -0 "$daemon_pid" 2>/dev/null
}

# start NAME ARG...: the daemon in the background, under a watchdog, once
# it says which button it watches (its edge detection is on by then).
start() {
	local name=$1
	shift
	# shellcheck disable=SC2086 # $wrapper is a word list
	$wrapper "$daemon" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	daemon_pid=$!
	watchdog "$daemon_pid"
	daemon_dog=$dog
	until_true "$name: the daemon never said it was ready" ready "$name"
}

# finish NAME: wait for the daemon started last; its status in $status.
finish() {
	wait "$daemon_pid"
	status=$?
	daemon_pid=
	kill "$daemon_dog" 2>/dev/null
	daemon_dog=
}

# edge NAME N LINE LEVEL...: drive LINE through LEVELs, then wait for the
# daemon to have printed N edges: one edge at a time, because the kernel
# reads a both-edges event's type from the level after the fact.
edge() {
	local name=$1 n=$2 i=$3
	shift 3
	press "$i" "$@"
	until_true "$name: edge $n never printed" lines_at_least "$name" "$n"
}

kernel_checks() {
	chip=${AF_TEST_GPIOCHIP##*/}
	k_released() {
		echo "gpio-button-daemon: released line $chip $1 \"$2\""
	}

	echo "--- 1: three presses on $chip, lines found by name, the LED toggled"
	press 0 0
	press 1 0
	start k1 --line aftest0 --led aftest1 --count 3
	# The daemon's pull-up holds the released button high.
	[ "$(level 0)" = 1 ] || fail "k1: the pull-up did not raise line 0"
	# (The third press ends the daemon, which releases the LED.)
	for k in 1 2; do
		edge k1 $((2 * k - 1)) 0 0
		until_true "k1: press $k did not toggle the LED" led_is 1 $((k % 2))
		edge k1 $((2 * k)) 0 1
	done
	edge k1 5 0 0
	finish
	exits k1 0
	check_edges k1 5 '"aftest0"'
	has k1 'gpio-button-daemon: stopping after --count presses' \
		"$(k_released 0 aftest0)" "$(k_released 1 aftest1)"
	[ "$failed" -eq 0 ] || show k1.out k1.err

	echo "--- 2: a bouncing button, debounced by the kernel"
	start k2 --line aftest2 --debounce 100 --count 2
	edge k2 1 2 0 1 0 1 0
	edge k2 2 2 1 0 1 0 1
	edge k2 3 2 0 1 0
	finish
	exits k2 0
	check_edges k2 3 '"aftest2"'
	has k2 "$(k_released 2 aftest2)"
	[ "$failed" -eq 0 ] || show k2.out k2.err

	echo "--- 3: --chip and an offset, active-low, pulled down"
	start k3 --chip "$AF_TEST_GPIOCHIP" --line 3 --active-low --bias pull-down --count 1
	edge k3 1 3 1
	finish
	exits k3 0
	check_edges k3 1 "$chip 3 \"aftest3\""
	has k3 "$(k_released 3 aftest3)"
	[ "$failed" -eq 0 ] || show k3.out k3.err

	echo "--- 4: a line another daemon holds, then SIGTERM"
	start k4 --line aftest4
	holder=$daemon_pid
	run k5 --line aftest4
	exits k5 5
	has k5 'gpio-button-daemon: button: line "aftest4" is in use by "gpio-button-daemon"'
	daemon_pid=$holder
	edge k4 1 4 0
	kill -TERM "$daemon_pid"
	finish
	exits k4 0
	check_edges k4 1 '"aftest4"'
	has k4 'gpio-button-daemon: stopping on a signal' "$(k_released 4 aftest4)"
	[ "$failed" -eq 0 ] || show k4.out k4.err k5.err
}

if [ -n "${AF_TEST_GPIOSIM_SYSFS:-}" ]; then
	kernel_checks
	if [ "$failed" -ne 0 ]; then
		exit 1
	fi
	echo "PASS"
	exit 0
fi

# ---- on the daemon's own simulated chip -------------------------------------

echo "--- 1: three presses on the simulated chip, then --count ends it"
run count --count 3 --sim-interval 20
exits count 0
check_edges count 5 '"GPIO17"'
has count 'sim: press 1: LED "GPIO27" is on' 'sim: press 2: LED "GPIO27" is off' \
	'sim: press 3: LED "GPIO27" is on' \
	'gpio-button-daemon: stopping after --count presses' "$released" "$released_led"
[ "$failed" -eq 0 ] || show count.out count.err

echo "--- 2: a bouncing button, debounced"
# Each press and release bounces three times within microseconds; 100 ms
# of quiet ends a burst, and the button rests 300 ms between moves.
run bounce --count 3 --debounce 100 --sim-bounce 3 --sim-interval 300
exits bounce 0
check_edges bounce 5 '"GPIO17"'
has bounce 'sim: press 1: LED "GPIO27" is on' 'sim: press 2: LED "GPIO27" is off' \
	'sim: press 3: LED "GPIO27" is on' "$released"
[ "$failed" -eq 0 ] || show bounce.out bounce.err

echo "--- 3: active-low, pulled down, other line names"
run low --sim --active-low --bias pull-down --line BUTTON --led LAMP --count 2 --sim-interval 20
exits low 0
check_edges low 3 '"BUTTON"'
has low 'sim: press 1: LED "LAMP" is on' 'sim: press 2: LED "LAMP" is off' \
	'gpio-button-daemon: released line gpio-button-daemon 0 "BUTTON"'
[ "$failed" -eq 0 ] || show low.out low.err

echo "--- 4: SIGTERM while the button is being pressed"
rm -f "$tmp/fifo"
mkfifo "$tmp/fifo" || exit 1
# Not under timeout(1): GNU timeout passes a SIGTERM on twice (to the
# command and to its process group), and the second one may arrive after
# the daemon has stopped watching SIGTERM.
# shellcheck disable=SC2086
$wrapper "$daemon" --sim-interval 20 >"$tmp/fifo" 2>"$tmp/term.err" &
daemon_pid=$!
watchdog "$daemon_pid"
daemon_dog=$dog
exec 3<"$tmp/fifo"
: >"$tmp/term.out"
for _ in 1 2 3 4; do
	if ! IFS= read -r l <&3; then
		break
	fi
	printf '%s\n' "$l" >>"$tmp/term.out"
done
kill -TERM "$daemon_pid"
cat <&3 >>"$tmp/term.out"
exec 3<&-
wait "$daemon_pid"
status=$?
daemon_pid=
kill "$daemon_dog" 2>/dev/null
daemon_dog=
if [ "$status" -eq 77 ]; then
	echo "SKIP: the daemon exited 77: the environment cannot run it"
	cat "$tmp/term.err"
	exit 77
fi
exits term 0
# Four edges read, and perhaps more printed before the signal was seen.
n=$(wc -l <"$tmp/term.out")
if [ "$n" -lt 4 ]; then
	fail "term: $n edges printed, want 4 or more"
fi
check_edges term "$n" '"GPIO17"'
has term 'gpio-button-daemon: stopping on a signal' "$released" "$released_led"
[ "$failed" -eq 0 ] || show term.out term.err

echo "--- 5: --help"
run help --help
exits help 0
for opt in --chip --line --led --bias --debounce --active-low --count --sim --sim-interval \
	   --sim-bounce --help "Exit status"; do
	if ! grep -q -- "$opt" "$tmp/help.out"; then
		fail "help: --help does not mention $opt"
	fi
done
# (A wrapper's own lines, valgrind's ==PID== ones, do not count.)
if grep -qv '^==[0-9]*==' "$tmp/help.err"; then
	fail "help: --help wrote to stderr"
fi

echo "--- 6: errors"
# No chips on a machine without GPIO, and none with this name on a Pi.
run noline --line NO_SUCH_LINE
exits noline 3
if ! grep -qF 'gpio-button-daemon: button: no GPIO line "NO_SUCH_LINE" on any chip' \
	"$tmp/noline.err"; then
	fail "noline: the message does not name the line"
fi
run nochip --chip /dev/no-such-gpiochip --line 3
exits nochip 3
if ! grep -qF 'gpio-button-daemon: no GPIO chip "/dev/no-such-gpiochip"' "$tmp/nochip.err"; then
	fail "nochip: the message does not name the chip"
fi
run offset --line 17
exits offset 2
if ! grep -qF 'line 17 is an offset: give --chip too' "$tmp/offset.err"; then
	fail "offset: no explanation of --line OFFSET without --chip"
fi
run badopt --frobnicate
exits badopt 2
run badbias --bias sideways
exits badbias 2
if ! grep -qF -- '--bias sideways: want pull-up, pull-down, disabled or as-is' "$tmp/badbias.err"; then
	fail "badbias: no explanation of --bias"
fi
for f in noline nochip offset badopt badbias; do
	if [ -s "$tmp/$f.out" ]; then
		fail "$f: printed on stdout"
	fi
done
[ "$failed" -eq 0 ] || show noline.err nochip.err offset.err badopt.err badbias.err

if [ "$failed" -ne 0 ]; then
	exit 1
fi
echo "PASS"
exit 0
