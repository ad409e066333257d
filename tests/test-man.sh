#!/bin/sh
# Every exported function has a man page, and every page renders without
# a warning from groff (what man(1) runs). TAP, one line per check.
# usage: test-man.sh MANDIR MAPFILE
set -u
dir=$1 map=$2
command -v groff >/dev/null 2>&1 || { echo "1..0 # SKIP groff is not installed (Debian: groff-base)"; exit 0; }
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
# One groff run over every page first: 116 runs, one per page, took over
# 30 s on a loaded machine, where this takes one second. If it is silent,
# so is every page; if not, each page is rendered alone to say which ones
# warn (a run reports an undefined macro only once, so the shared run
# cannot name every page that uses it).
groff -man -Tutf8 -ww -z "$dir"/af_*.3 >"$tmp" 2>&1
n=0 page_failed=0
for f in $(sed -n 's/^[[:space:]]*\(af_[a-z0-9_]*\);.*/\1/p' "$map"); do
	n=$((n + 1))
	if [ ! -f "$dir/$f.3" ]; then
		echo "not ok $n - $f has a man page"
		continue
	fi
	err=
	[ -s "$tmp" ] && err=$(groff -man -Tutf8 -ww -z "$dir/$f.3" 2>&1)
	if [ -n "$err" ]; then
		echo "not ok $n - $f.3 renders without warnings"
		printf '%s\n' "$err" | sed 's/^/# /'
		page_failed=1
	elif grep -q '^No description\.$' "$dir/$f.3"; then
		echo "not ok $n - $f.3 has a description (its header comment is missing)"
	else
		echo "ok $n - $f.3 exists and renders without warnings"
	fi
done
# Warnings, yet no page of the map has one: a page for a function that
# is not exported, or groff failing as a whole.
n=$((n + 1))
if [ -s "$tmp" ] && [ "$page_failed" -eq 0 ]; then
	echo "not ok $n - the pages render together without warnings"
	sed 's/^/# /' "$tmp"
else
	echo "ok $n - the pages render together without warnings"
fi
if command -v man >/dev/null 2>&1; then
	n=$((n + 1))
	if MANWIDTH=80 man -l "$dir/af_loop_new.3" 2>&1 >/dev/null | grep -q .; then
		echo "not ok $n - man -l renders af_loop_new.3 silently"
	else
		echo "ok $n - man -l renders af_loop_new.3 silently"
	fi
fi
echo "1..$n"
