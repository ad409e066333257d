#!/bin/sh
# The shared library exports exactly the symbols listed in the version
# script: nothing private leaks, nothing listed is missing.
set -eu
lib=$1 map=$2
echo "1..2"
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ { print $3 }' | sed 's/@.*//' | grep -v '^LIBASYNCFLAG' | sort -u)
listed=$(sed -n 's/^[[:space:]]*\(af_[a-z0-9_]*\);.*/\1/p' "$map" | sort -u)
if [ "$exported" = "$listed" ]; then
  echo "ok 1 - the library exports exactly the symbols in libasyncflag.map"
else
  echo "not ok 1 - the library exports exactly the symbols in libasyncflag.map"
  diff -u /dev/fd/3 /dev/fd/4 3<<A 4<<B | sed 's/^/# /'
$listed
A
$exported
B
fi
if echo "$exported" | grep -qv '^af_'; then
  echo "not ok 2 - every exported symbol has the af_ prefix"
else
  echo "ok 2 - every exported symbol has the af_ prefix"
fi
