#!/usr/bin/env bash
# Shared by scripts/run and scripts/test: install what is missing (Debian
# packages via apt-get), then configure and build a meson build directory.
# Sourced, not run.

AF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Build and test dependencies, by Debian package name. valgrind runs the
# examples' leak checks; python3 reads meson's test log for the summary; jq
# checks the benchmarks' JSON output; libuv1-dev is the echo benchmark's
# side-by-side baseline.
AF_PACKAGES=(gcc libc6-dev meson ninja-build pkg-config liburing-dev check libsubunit-dev valgrind python3 jq libuv1-dev)
# gnuplot-nox draws asyncflag-bench's --plot (scripts/run, the bench-smoke suite).
AF_PACKAGES+=(gnuplot-nox)
# groff-base renders, man-db reads the generated man pages (tests/test-man.sh).
AF_PACKAGES+=(groff-base man-db)

af_missing_packages() {
	local p missing=()
	for p in "${AF_PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	echo "${missing[@]}"
}

af_install_deps() {
	local missing sudo=""
	if ! command -v dpkg-query >/dev/null 2>&1; then
		echo "scripts: not a Debian-family system; install by hand: ${AF_PACKAGES[*]}" >&2
		return 0
	fi
	missing=$(af_missing_packages)
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo="sudo"
		else
			echo "scripts: missing packages ($missing) and not root; install them with apt-get" >&2
			return 1
		fi
	fi
	echo "scripts: installing $missing"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing || return 1
}

# af_build DIR [meson options...]: configure once (reconfigure when the
# options change) and build.
af_build() {
	local dir=$1
	shift
	local stamp="$dir/.af-options" want="$*"
	if [ -f "$dir/build.ninja" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		:
	elif [ -f "$dir/build.ninja" ]; then
		meson setup --wipe "$dir" "$AF_ROOT" "$@" >/dev/null || return 1
	else
		meson setup "$dir" "$AF_ROOT" "$@" >/dev/null || return 1
	fi
	echo "$want" >"$stamp"
	ninja -C "$dir" >/dev/null || ninja -C "$dir"
}

# The test guests (tests/vm/: the suites on a real Linux 6.1 kernel under
# qemu, x86_64 and arm64, armhf on request) and the armhf cross-build: the
# kernel source (gpio-sim's, and a whole kernel's where Debian's own cannot
# be had) and what building it takes, qemu, the cross compilers, and the
# arm64 / armhf libraries the cross-built tests link, through multiarch.
# Debian's kernel packages are fetched by vm.py (apt-get download), never
# installed. Installed separately: without them the vm-* suites skip with
# the reason.
AF_VM_FOREIGN_ARCHES=(arm64 armhf)
AF_VM_PACKAGES=(linux-source-6.1 make bc flex bison cpio binutils libelf-dev libssl-dev
	xz-utils qemu-system-x86 qemu-system-arm busybox-static
	gcc-aarch64-linux-gnu libc6-dev:arm64 liburing-dev:arm64 check:arm64 libsubunit-dev:arm64
	gcc-arm-linux-gnueabihf libc6-dev:armhf liburing-dev:armhf check:armhf libsubunit-dev:armhf)

af_vm_missing_packages() {
	local p missing=()
	for p in "${AF_VM_PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	echo "${missing[@]}"
}

# Never fails: what cannot be installed makes the VM suites skip, saying why.
af_install_vm_deps() {
	local missing a sudo=""
	command -v dpkg-query >/dev/null 2>&1 || return 0
	missing=$(af_vm_missing_packages)
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "scripts: VM packages missing ($missing) and not root; the vm-* suites will skip" >&2
			return 0
		fi
		sudo="sudo"
	fi
	for a in "${AF_VM_FOREIGN_ARCHES[@]}"; do
		if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
			$sudo dpkg --add-architecture "$a"
		fi
	done
	echo "scripts: installing VM packages $missing"
	# shellcheck disable=SC2086
	if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; }; then
		echo "scripts: apt-get could not install the VM packages; the vm-* suites will skip" >&2
	fi
}
