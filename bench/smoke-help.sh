#!/bin/sh
# asyncflag-bench --help and its man page name every long option the
# program accepts (read from its getopt table in SOURCE), and a bad option
# or argument exits 2 with a message.
# usage: smoke-help.sh ASYNCFLAG-BENCH SOURCE MANPAGE
set -u
bench=$1
src=$2
man=$3
fail() {
	echo "smoke-help: $*" >&2
	exit 1
}
help=$("$bench" --help) || fail "--help exited with $?"
opts=$(sed -n 's/^[[:space:]]*{ "\([a-z-]*\)", [a-z_]*_argument,.*/\1/p' "$src")
[ -n "$opts" ] || fail "no options found in $src"
for o in $opts; do
	printf '%s\n' "$help" | grep -q -e "--$o\b" || fail "--help does not mention --$o"
	# roff writes the dashes as \-\-
	grep -q -e "^\.[A-Z]* *\\\\-\\\\-$(printf '%s' "$o" | sed 's/-/\\\\-/g')\b" "$man" ||
		fail "the man page has no entry for --$o"
done
for bad in "--no-such-option" "--scenario nosuch" "--iterations 0" "--rt 100" \
	"--chip /dev/gpiochip0" "--duration -1" "--cpu x"; do
	# shellcheck disable=SC2086
	"$bench" $bad >/dev/null 2>"${TMPDIR:-/tmp}/afb-help.$$"
	st=$?
	[ "$st" -eq 2 ] || fail "'$bad' exited with $st, not 2"
	[ -s "${TMPDIR:-/tmp}/afb-help.$$" ] || fail "'$bad' said nothing on stderr"
done
rm -f "${TMPDIR:-/tmp}/afb-help.$$"
# --rt where it is not permitted: each refused part named, and the run goes on.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
	err=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$bench" --rt 50 --iterations 5 --scenario event 2>&1 >/dev/null) ||
		fail "--rt as an unprivileged user exited with $?"
	for part in SCHED_FIFO /dev/cpu_dma_latency 'running without those'; do
		printf '%s\n' "$err" | grep -q -e "$part" || fail "--rt refused: no word on $part"
	done
fi
echo "smoke-help: $(echo $opts | wc -w) options documented; bad options refused"
