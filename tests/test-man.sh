#!/bin/sh
# Every exported function has a man page, and every page renders without
# a warning from groff (what man(1) runs). TAP, one line per check.
# usage: test-man.sh MANDIR MAPFILE
set -u
dir=$1 map=$2
command -v groff >/dev/null 2>&1 || { echo "1..0 # SKIP groff is not installed (Debian: groff-base)"; exit 0; }
n=0
for f in $(sed -n 's/^[[:space:]]*\(af_[a-z0-9_]*\);.*/\1/p' "$map"); do
	n=$((n + 1))
	if [ ! -f "$dir/$f.3" ]; then
		echo "not ok $n - $f has a man page"
		continue
	fi
	err=$(groff -man -Tutf8 -ww -z "$dir/$f.3" 2>&1)
	if [ -n "$err" ]; then
		echo "not ok $n - $f.3 renders without warnings"
		printf '%s\n' "$err" | sed 's/^/# /'
	elif grep -q '^No description\.$' "$dir/$f.3"; then
		echo "not ok $n - $f.3 has a description (its header comment is missing)"
	else
		echo "ok $n - $f.3 exists and renders without warnings"
	fi
done
if command -v man >/dev/null 2>&1; then
	n=$((n + 1))
	if MANWIDTH=80 man -l "$dir/af_loop_new.3" 2>&1 >/dev/null | grep -q .; then
		echo "not ok $n - man -l renders af_loop_new.3 silently"
	else
		echo "ok $n - man -l renders af_loop_new.3 silently"
	fi
fi
echo "1..$n"
