# SPDX-License-Identifier: MIT
# The GPIO part of the guests' /init (init.sh sources it; busybox sh):
# gpio_suites runs tests/test-gpio on the library's simulated chip, then on
# a gpio-sim chip of the kernel's configured through configfs, then the
# button daemon's checks on that chip (examples/gpio-button-daemon-test.sh).

# One gpio-sim chip with 16 named lines, the contract of tests/test-gpio.c:
# AF_TEST_GPIOCHIP names the chip's device, AF_TEST_GPIOSIM_SYSFS the
# directory holding sim_gpio<i>/pull (drives an input edge) and value.
gpiosim_setup() {
	local d=/sys/kernel/config/gpio-sim/aftest i=0
	mkdir "$d" "$d/bank0" || return 1
	echo 16 >"$d/bank0/num_lines"
	while [ $i -lt 16 ]; do
		mkdir "$d/bank0/line$i"
		echo "aftest$i" >"$d/bank0/line$i/name"
		i=$((i + 1))
	done
	echo 1 >"$d/live" || return 1
	local chip=$(cat "$d/bank0/chip_name") dev=$(cat "$d/dev_name")
	[ -c "/dev/$chip" ] || return 1
	export AF_TEST_GPIOCHIP=/dev/$chip
	export AF_TEST_GPIOSIM_SYSFS=/sys/devices/platform/$dev/$chip
	echo "# gpio-sim: AF_TEST_GPIOCHIP=$AF_TEST_GPIOCHIP AF_TEST_GPIOSIM_SYSFS=$AF_TEST_GPIOSIM_SYSFS"
}

# The daemon check's "--- N: what" sections as TAP cases; a section with a
# FAIL line fails, and its output follows as diagnostics.
tap_sections() {
	awk '
	function end_case(i) {
		if (title == "")
			return
		printf "%s %d - %s\n", bad ? "not ok" : "ok", ++n, title
		for (i = 0; bad && i < nd; i++)
			print "# " out[i]
		nd = bad = 0
	}
	/^--- [0-9]+: / { end_case(); title = substr($0, 5); next }
	/^FAIL: / { bad = 1 }
	{ out[nd++] = $0 }
	END { end_case(); print "1.." n }'
}

gpio_daemon_check() {
	sh /af/gpio-button-daemon-test.sh /af/gpio-button-daemon >/tmp/gpio-daemon.log 2>&1
	local rc=$?
	tap_sections </tmp/gpio-daemon.log
	return $rc
}

gpio_suites() {
	# First with no chip of the kernel's: names are searched on the
	# kernel's chips before the process's simulated ones, so aftest13
	# would be the kernel's line.
	suite gpio /af/gpio
	if ! gpiosim_setup; then
		echo "@@AF-BEGIN gpio-kernel-sim"
		echo "not ok 1 - a gpio-sim chip set up through configfs"
		echo "1..1"
		echo "@@AF-END gpio-kernel-sim 1"
		return
	fi
	suite gpio-kernel-sim /af/gpio
	if [ -x /af/gpio-button-daemon ]; then
		suite gpio-button-daemon-kernel-sim gpio_daemon_check
	fi
	unset AF_TEST_GPIOCHIP AF_TEST_GPIOSIM_SYSFS
}
