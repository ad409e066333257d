#!/bin/sh
# Use the library the two ways users do: installed, found with pkg-config,
# and as a meson subproject through dependency('asyncflag').
# Usage: test-consumer.sh BUILD_DIR SOURCE_DIR
set -u
build=$(cd "$1" && pwd) src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..3"

cat >"$tmp/hello.c" <<'C'
#include <asyncflag.h>
#include <stdio.h>

static struct af_event ev;

static int waiter(void *arg)
{
	(void)arg;
	return af_event_wait(&ev) == 0 ? 3 : 1;
}

static int main_task(void *arg)
{
	struct af_task *t;
	int r = -1;

	(void)arg;
	if (af_task_spawn(&t, waiter, NULL) < 0)
		return 1;
	af_yield();
	af_event_set(&ev);
	af_task_join(t, &r);
	return r + 39;
}

int main(void)
{
	int r = af_run(main_task, NULL);

	printf("%s %d\n", af_version(), r);
	return r == 42 ? 0 : 1;
}
C

# 1: install into a staging root; the pkg-config file must carry us.
if meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1; then
	pcdir=$(dirname "$(find "$tmp/root" -name asyncflag.pc | head -n1)")
	if [ -n "$pcdir" ] && grep -q '^Requires.private:.*liburing' "$pcdir/asyncflag.pc" &&
		! grep -q '^Requires:.*liburing' "$pcdir/asyncflag.pc"; then
		echo "ok 1 - meson install ships asyncflag.pc with liburing only in Requires.private"
	else
		echo "not ok 1 - meson install ships asyncflag.pc with liburing only in Requires.private"
	fi
else
	echo "not ok 1 - meson install ships asyncflag.pc with liburing only in Requires.private"
	sed 's/^/# /' "$tmp/install.log"
fi

# 2: compile and run a program with the installed headers and pkg-config.
# PKG_CONFIG_SYSROOT_DIR re-roots the -I and -L paths into the staging root.
flags=$(PKG_CONFIG_PATH=$pcdir PKG_CONFIG_SYSROOT_DIR=$tmp/root pkg-config --cflags --libs asyncflag 2>&1)
libdir=$(dirname "$pcdir")
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Werror "$tmp/hello.c" -o "$tmp/hello" $flags >"$tmp/cc.log" 2>&1 &&
	LD_LIBRARY_PATH=$libdir "$tmp/hello" >"$tmp/out" 2>&1; then
	echo "ok 2 - a program built with pkg-config --cflags --libs asyncflag links and runs"
else
	echo "not ok 2 - a program built with pkg-config --cflags --libs asyncflag links and runs"
	sed 's/^/# /' "$tmp/cc.log" "$tmp/out" 2>/dev/null
	echo "# flags: $flags"
fi

# 3: a meson project that pulls libasyncflag in as a subproject.
mkdir -p "$tmp/consumer/subprojects"
ln -s "$src" "$tmp/consumer/subprojects/libasyncflag"
cp "$tmp/hello.c" "$tmp/consumer/"
cat >"$tmp/consumer/meson.build" <<'M'
project('consumer', 'c', default_options : ['c_std=c11'])
subproject('libasyncflag')
executable('hello', 'hello.c', dependencies : dependency('asyncflag'))
M
if meson setup "$tmp/consumer/b" "$tmp/consumer" >"$tmp/sub.log" 2>&1 &&
	ninja -C "$tmp/consumer/b" >>"$tmp/sub.log" 2>&1 &&
	"$tmp/consumer/b/hello" >>"$tmp/sub.log" 2>&1; then
	echo "ok 3 - a meson project gets the library as a subproject with dependency('asyncflag')"
else
	echo "not ok 3 - a meson project gets the library as a subproject with dependency('asyncflag')"
	tail -n 30 "$tmp/sub.log" | sed 's/^/# /'
fi
