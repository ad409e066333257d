#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the test guests (packed by vm.py). Mounts what the library and
# its tests need, runs every program in /af/suites between markers on the
# console (gpio through guest-gpio.sh, which sets up a gpio-sim chip), and
# powers the guest off (qemu runs with -no-reboot, so `reboot -f` ends it).
# vm.py reads the markers:
#   @@AF-KERNEL <release> <machine>   /init is running
#   @@AF-BEGIN <suite> ... @@AF-END <suite> <exit status>   TAP in between
#   @@AF-ERR <line>                   the suite's stderr, when it failed
#   @@AF-DONE                         every suite ran
/bin/busybox --install -s /bin
export PATH=/bin
# Debian's kernel has configfs as a module, and gpio-sim is ours (vm.py).
for m in $(cat /af/modules); do
	insmod /af/"$m" || echo "@@AF-ERR # insmod $m failed: the gpio-sim suites will fail"
done
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t configfs configfs /sys/kernel/config
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/shm && mount -t tmpfs tmpfs /dev/shm
# What udev would create; Check writes its TAP to /dev/stdout.
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
ifconfig lo 127.0.0.1 up
# test-stack spawns until the mapping limit refuses a stack (two mappings
# each on 6.1): under emulation the default 65530 costs the guest most of a
# minute. Its scale case needs 20000 (10^4 tasks), so keep room above that.
echo 24576 >/proc/sys/vm/max_map_count
# The tests run as root with a home and a writable working directory.
export HOME=/tmp TMPDIR=/tmp LD_LIBRARY_PATH=$(cat /af/libdir)
cd /tmp
echo "@@AF-KERNEL $(uname -r) $(uname -m)"

# Check prints TAP on stdout and forks each case, as in tests/meson.build;
# the per-case timeouts are those of the tests, times 4: emulation runs
# them 10 to 50 times slower, and the race cases hand off between threads
# thousands of times (a hang still fails, minutes later).
export CK_TAP_LOG_FILE_NAME=/dev/stdout CK_VERBOSITY=silent CK_FORK=yes CK_DEFAULT_TIMEOUT=120
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}
# Stress cases run a tenth of the host's rounds (tests/testutil.h's
# test_rounds): still thousands of hand-offs per case on the real kernel,
# where the host's counts cost the guests minutes each.
export AF_TEST_SCALE=${AF_TEST_SCALE:-0.1}

# The guest's seconds per suite go to the log as a TAP comment: they are
# what the time budget of docs/testing.md is spent on.
suite() {
	local name=$1 t0
	shift
	t0=$(date +%s)
	echo "@@AF-BEGIN $name"
	"$@" 2>/tmp/stderr
	local rc=$?
	if [ $rc -ne 0 ]; then
		tail -n 40 /tmp/stderr | sed 's/^/@@AF-ERR # /'
	fi
	echo "# $name: $(($(date +%s) - t0)) s in the guest"
	echo "@@AF-END $name $rc"
}

. /af/guest-gpio.sh

for s in $(cat /af/suites); do
	case $s in
	bench-switch)
		# Figures, not a test: printed as TAP comments for the report.
		echo "@@AF-BEGIN bench-switch"
		/af/bench-switch --rounds 15 --iters 20000 2>&1 | sed 's/^/# /'
		echo "@@AF-END bench-switch 0"
		;;
	gpio)
		gpio_suites
		;;
	*)
		suite "$s" /af/"$s"
		;;
	esac
done
echo "@@AF-DONE"
sync
reboot -f
