#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run the test suites inside a Linux 6.1 guest under qemu (software emulation).

    vm.py run ARCH --source-root DIR --build-root DIR   TAP on stdout (a meson test)
    vm.py kernel ARCH                                   fetch or build the kernel, print its
                                                        image's path and its modules' paths

ARCH is x86_64, arm64 or armhf (32-bit Raspberry Pi OS, Debian's kernel
only). AF_VM_KERNEL picks where the guest's kernel comes from:
  debian  Debian's own 6.1 kernel, the package Debian 12 users run
          (linux-image-6.1.0-N-amd64, -arm64 or -armmp, of the same version
          as the installed linux-source-6.1), and, built from that source
          as a module against Debian's linux-headers, the gpio-sim driver
          with the irq simulator it needs (Debian builds neither). About
          30 s from cold: three source files are compiled.
  source  make tinyconfig plus config-common.fragment and
          config-ARCH.fragment, built from linux-source-6.1 (about 500 CPU
          seconds per architecture on 2 cores).
  auto    (the default) debian, or source where Debian's kernel packages
          cannot be downloaded or differ in version from the source.
Either is cached in ${XDG_CACHE_HOME:-~/.cache}/asyncflag-vm/
[debian-]ARCH-DEBVERSION-HASH (the hash covers what the kernel is made
from), so only the first run fetches or builds it.
For arm64 and armhf the project is cross-built in BUILD-ROOT/vm-ARCH with
cross-aarch64.txt or cross-armhf.txt; x86_64 guests run BUILD-ROOT's own
programs.

The guest's /init (init.sh) mounts what the tests need, sets up a gpio-sim
chip, runs each suite between markers on the serial console and powers off.
We turn what it printed into one TAP stream, each case prefixed with its
suite's name, so meson and scripts/summarize.py count guest cases one by one.
Where qemu, the kernel source or the cross toolchain is missing the whole
test is skipped with the reason ("1..0 # SKIP ...").

Environment: AF_VM_KERNEL (above), AF_VM_ARMHF (1 runs the armhf guest,
which is left out otherwise: it costs twice the arm64 one), AF_VM_JOBS (make
-j, default 2), AF_VM_TIMEOUT (seconds for one boot, default 1200),
AF_VM_SUITES (space-separated suite names to run instead of all),
CK_RUN_SUITE and CK_RUN_CASE (Check's own selection, passed on to the
guest's suites), AF_TEST_SCALE (the guests' factor on stress rounds,
init.sh's default otherwise; 1 runs the host's rounds). The guest's console
is always kept in BUILD-ROOT/vm-ARCH.log.
"""
import argparse
import fcntl
import glob
import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_TARBALL = "/usr/src/linux-source-6.1.tar.xz"
KERNEL_PACKAGE = "linux-source-6.1"

ARCHES = {
    "x86_64": {
        "karch": "x86_64",
        "cross": "",
        "image": "arch/x86/boot/bzImage",
        "qemu": "qemu-system-x86_64",
        "machine": ["-M", "pc", "-cpu", "max"],
        "console": "ttyS0",
        # The TSC is calibrated at boot, against a vCPU the host may not
        # be running: on a loaded host the guest's clock then ran 12 times
        # too fast, and every timeout expired early. qemu's HPET keeps
        # the host's time.
        "append": "clocksource=hpet",
        "triplet": "x86_64-linux-gnu",
        "deb_arch": "amd64",
        "flavour": "amd64",
        "cross_file": None,
    },
    "arm64": {
        "karch": "arm64",
        "cross": "aarch64-linux-gnu-",
        "image": "arch/arm64/boot/Image",
        "qemu": "qemu-system-aarch64",
        "machine": ["-M", "virt", "-cpu", "cortex-a72"],
        "console": "ttyAMA0",
        # The generic timer's frequency comes from qemu: no calibration.
        # kpti=0: Debian's kernel randomises its base (qemu's device tree
        # brings a seed), and then isolates its page tables from user space
        # whatever mitigations= says; every system call and interrupt then
        # switches tables, which emulated doubles the suites' CPU time.
        "append": "kpti=0",
        "triplet": "aarch64-linux-gnu",
        "deb_arch": "arm64",
        "flavour": "arm64",
        "cross_file": "cross-aarch64.txt",
    },
    # 32-bit Raspberry Pi OS: Debian's armmp kernel, which runs on qemu's
    # virt board; cortex-a15 is the ARMv7 core with the Pi's VFP/NEON.
    "armhf": {
        "karch": "arm",
        "cross": "arm-linux-gnueabihf-",
        "image": "arch/arm/boot/zImage",
        "qemu": "qemu-system-arm",
        "machine": ["-M", "virt", "-cpu", "cortex-a15"],
        "console": "ttyAMA0",
        "append": "",
        "triplet": "arm-linux-gnueabihf",
        "deb_arch": "armhf",
        "flavour": "armmp",
        "cross_file": "cross-armhf.txt",
    },
}


class Skip(Exception):
    """Something the guest needs cannot be had here: skip, do not fail."""


def log(msg):
    # stderr: meson keeps it in the test log, stdout is the TAP stream.
    print(f"vm: {msg}", file=sys.stderr, flush=True)


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "asyncflag-vm")


class Lock:
    """An flock on a file in the cache: two meson runs (or two builds
    directories) must not extract or build the same kernel at once."""

    def __init__(self, name):
        os.makedirs(cache_root(), exist_ok=True)
        self.path = os.path.join(cache_root(), name + ".lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=kw.pop("stdout", sys.stderr), stderr=sys.stderr, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {r.returncode}")
    return r


# ---- the kernel ------------------------------------------------------------------


def kernel_version():
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", KERNEL_PACKAGE],
                             capture_output=True, text=True)
    except OSError:
        out = None
    if out is None or out.returncode != 0 or not os.path.exists(KERNEL_TARBALL):
        raise Skip(f"{KERNEL_PACKAGE} is not installed (apt-get install {KERNEL_PACKAGE})")
    return out.stdout.strip()


def fragments(arch):
    return [os.path.join(HERE, "config-common.fragment"),
            os.path.join(HERE, f"config-{arch}.fragment")]


def wanted_options(arch):
    opts = {}
    for path in fragments(arch):
        for line in open(path):
            opt = config_line(line)
            if opt:
                opts[opt[0]] = opt[1]
    return opts


def config_line(line):
    """(name, value) of a .config or fragment line, value "n" for an
    option left out ("# CONFIG_X is not set"); None for anything else."""
    m = re.match(r"^(CONFIG_\w+)=(.*)$", line.strip())
    if m:
        return m.group(1), m.group(2)
    m = re.match(r"^# (CONFIG_\w+) is not set$", line.strip())
    return (m.group(1), "n") if m else None


def kernel_key(arch, version):
    h = hashlib.sha256(version.encode())
    for path in fragments(arch):
        h.update(open(path, "rb").read())
    return f"{arch}-{version}-{h.hexdigest()[:12]}"


def kernel_source(version):
    """The unpacked source tree, shared by every architecture (builds are
    out of tree with O=)."""
    src = os.path.join(cache_root(), f"src-{version}")
    stamp = os.path.join(src, ".af-unpacked")
    with Lock(f"src-{version}"):
        if not os.path.exists(stamp):
            shutil.rmtree(src, ignore_errors=True)
            os.makedirs(src)
            log(f"unpacking {KERNEL_TARBALL} (once per source version)")
            run(["tar", "-xf", KERNEL_TARBALL, "-C", src, "--strip-components=1"])
            open(stamp, "w").close()
    return src


def check_config(config_path, want):
    have = dict(filter(None, map(config_line, open(config_path))))
    # An option the kernel does not offer at all is as left out as one set to n.
    bad = [f"{k}={v} (got {have.get(k, 'unset')})" for k, v in want.items()
           if have.get(k, "n") != v]
    if bad:
        raise RuntimeError("kernel config differs from the fragments (an option wanted =y lacks a "
                           "dependency or does not exist in 6.1; one left out is selected by "
                           "another): " + ", ".join(bad))


def source_kernel(arch):
    """tinyconfig plus the fragments, built from linux-source-6.1."""
    a = ARCHES[arch]
    if not os.path.exists(fragments(arch)[1]):
        raise Skip(f"no config-{arch}.fragment: the {arch} guest boots Debian's kernel only")
    version = kernel_version()
    if a["cross"] and not shutil.which(a["cross"] + "gcc"):
        raise Skip(f"no {a['cross']}gcc (apt-get install gcc-{a['triplet']})")
    for tool in ("make", "flex", "bison", "bc"):
        if not shutil.which(tool):
            raise Skip(f"{tool} is missing, the kernel build needs it")
    out = os.path.join(cache_root(), kernel_key(arch, version))
    image = os.path.join(out, "image")
    with Lock(os.path.basename(out)):
        if os.path.exists(image):
            check_config(os.path.join(out, "config"), wanted_options(arch))
            log(f"kernel {out} (cached)")
            return Kernel(image, [])
        src = kernel_source(version)
        obj = os.path.join(out, "obj")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(obj)
        make = ["make", "-C", src, f"O={obj}", f"ARCH={a['karch']}"]
        if a["cross"]:
            make.append(f"CROSS_COMPILE={a['cross']}")
        t0 = time.time()
        run(make + ["tinyconfig"], stdout=subprocess.DEVNULL)
        with open(os.path.join(obj, ".config"), "a") as cfg:
            for path in fragments(arch):
                cfg.write(open(path).read())
        run(make + ["olddefconfig"], stdout=subprocess.DEVNULL)
        check_config(os.path.join(obj, ".config"), wanted_options(arch))
        jobs = os.environ.get("AF_VM_JOBS", "2")
        run(make + [f"-j{jobs}", os.path.basename(a["image"])], stdout=subprocess.DEVNULL)
        shutil.copy(os.path.join(obj, ".config"), os.path.join(out, "config"))
        shutil.copy(os.path.join(obj, a["image"]), image + ".tmp")
        os.rename(image + ".tmp", image)
        shutil.rmtree(obj)
        log(f"kernel {out} built in {time.time() - t0:.0f} s")
        return Kernel(image, [])


# ---- Debian's kernel and a gpio-sim module for it -------------------------------

# Debian builds neither gpio-sim nor the irq simulator it selects
# (CONFIG_IRQ_SIM), so both are compiled from the matching linux-source into
# one module. Paths are inside the source tree.
MODULE_SOURCES = {
    "drivers/gpio/gpio-sim.c": "gpio-sim-main.c",
    "drivers/gpio/gpiolib.h": "gpiolib.h",
    "kernel/irq/irq_sim.c": "irq_sim.c",
}
MODULE_KBUILD = "obj-m := gpio-sim.o\ngpio-sim-y := gpio-sim-main.o irq_sim.o\n"
# The changes to the kernel's code. irq_sim.c calls irq_to_desc(), which 6.1
# does not export to modules; generic_handle_irq() is exported and, for the
# handle_simple_irq handler irq_sim installs on every interrupt it maps,
# calls the same function on the same descriptor. gpio-sim's device-tree
# match table only names the module for autoloading (insmod needs no name),
# and the host's kbuild, built for a 64-bit kernel, measures the table's
# entries with 64-bit sizes: an armhf build would fail on it.
MODULE_PATCHES = [
    ("irq_sim.c", "handle_simple_irq(irq_to_desc(irqnum));", "generic_handle_irq(irqnum);"),
    ("gpio-sim-main.c", "MODULE_DEVICE_TABLE(of, gpio_sim_of_match);", ""),
]
# What the suites need of Debian's config; CONFIGFS_FS may be a module (it is).
DEBIAN_WANTS = dict(filter(None, (config_line(l) for l in """\
CONFIG_GPIOLIB=y
CONFIG_GPIO_CDEV=y
CONFIG_IO_URING=y
CONFIG_EVENTFD=y
CONFIG_SIGNALFD=y
CONFIG_TIMERFD=y
CONFIG_EPOLL=y
CONFIG_FUTEX=y
CONFIG_SECCOMP_FILTER=y
CONFIG_UNIX=y
CONFIG_INET=y
CONFIG_TMPFS=y
CONFIG_DEVTMPFS=y
CONFIG_BLK_DEV_INITRD=y
CONFIG_RD_GZIP=y
CONFIG_MODULES=y
# CONFIG_MODULE_SIG_FORCE is not set
""".splitlines())))


class Kernel:
    """What a guest boots: the image, and the modules /init loads first, in
    order (paths on the host)."""

    def __init__(self, image, modules):
        self.image, self.modules = image, modules


def apt_version(pkg):
    """The candidate version apt would download of @pkg ("name:arch"), or None."""
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", pkg], capture_output=True, text=True)
    m = re.search(r"^Version: (\S+)$", out.stdout, re.M) if out.returncode == 0 else None
    return m.group(1) if m else None


def debian_abi(a, version):
    """The running-kernel name Debian gives its current 6.1 kernel for this
    architecture ("6.1.0-57-arm64"), checked to be of @version, the source's:
    the module is compiled against that kernel's internal gpiolib.h."""
    flavour, arch = a["flavour"], a["deb_arch"]
    out = subprocess.run(["apt-cache", "depends", f"linux-image-{flavour}:{arch}"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Depends: linux-image-(6\.1\.\d+-\d+-" + flavour + r")\b", out)
    if not m:
        raise Skip(f"apt knows no linux-image-{flavour}:{arch} (dpkg --add-architecture "
                   f"{arch}; apt-get update)")
    have = apt_version(f"linux-image-{m.group(1)}:{arch}")
    if have != version:
        raise Skip(f"Debian's kernel linux-image-{m.group(1)} is {have}, "
                   f"the installed {KERNEL_PACKAGE} is {version}")
    return m.group(1)


def debian_key(arch, version):
    h = hashlib.sha256(version.encode())
    h.update(repr((sorted(MODULE_SOURCES.items()), MODULE_KBUILD, MODULE_PATCHES)).encode())
    return f"debian-{arch}-{version}-{h.hexdigest()[:12]}"


def debian_kernel(arch):
    a = ARCHES[arch]
    version = kernel_version()
    out = os.path.join(cache_root(), debian_key(arch, version))
    image = os.path.join(out, "image")
    with Lock(os.path.basename(out)):
        if os.path.exists(image):
            log(f"kernel {out} (cached)")
            return Kernel(image, [os.path.join(out, m) for m in ("configfs.ko", "gpio-sim.ko")])
        if a["cross"] and not shutil.which(a["cross"] + "gcc-12"):
            raise Skip(f"no {a['cross']}gcc-12 (apt-get install gcc-{a['triplet']})")
        abi = debian_abi(a, version)
        t0 = time.time()
        shutil.rmtree(out, ignore_errors=True)
        root, debs = os.path.join(out, "root"), os.path.join(out, "debs")
        os.makedirs(root)
        os.makedirs(debs)
        host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True).stdout.strip()
        arch_q = a["deb_arch"]
        pkgs = [f"linux-image-{abi}:{arch_q}", f"linux-headers-{abi}:{arch_q}",
                f"linux-headers-{abi.rsplit('-', 1)[0]}-common",
                # The headers' build tools run on the host: its own kbuild.
                f"linux-kbuild-6.1:{host}"]
        r = subprocess.run(["apt-get", "download"] + [f"{p}={version}" for p in pkgs], cwd=debs,
                           stdout=sys.stderr, stderr=sys.stderr)
        if r.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            raise Skip(f"cannot download Debian's kernel packages {' '.join(pkgs)}")
        for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
            unpack_deb(deb, root, abi)
        check_config(os.path.join(root, "boot", f"config-{abi}"), DEBIAN_WANTS)
        ko = build_gpio_sim(a, root, abi, os.path.join(out, "mod"))
        shutil.copy(os.path.join(root, "lib", "modules", abi, "kernel", "fs", "configfs", "configfs.ko"),
                    os.path.join(out, "configfs.ko"))
        shutil.copy(ko, os.path.join(out, "gpio-sim.ko"))
        shutil.copy(os.path.join(root, "boot", f"config-{abi}"), os.path.join(out, "config"))
        shutil.copy(os.path.join(root, "boot", f"vmlinuz-{abi}"), image + ".tmp")
        os.rename(image + ".tmp", image)
        for d in (root, debs, os.path.join(out, "mod")):
            shutil.rmtree(d)
        log(f"kernel {out}: Debian's {abi} {version}, gpio-sim built, in {time.time() - t0:.0f} s")
        return Kernel(image, [os.path.join(out, m) for m in ("configfs.ko", "gpio-sim.ko")])


def unpack_deb(deb, root, abi):
    """Unpack a package into @root; of the image's (some 400 MB of modules)
    only the kernel, its config and configfs.ko."""
    if not os.path.basename(deb).startswith("linux-image-"):
        run(["dpkg-deb", "-x", deb, root])
        return
    want = [f"./boot/vmlinuz-{abi}", f"./boot/config-{abi}",
            f"./lib/modules/{abi}/kernel/fs/configfs/configfs.ko"]
    log(f"$ dpkg-deb --fsys-tarfile {deb} | tar -x {' '.join(want)}")
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    r = subprocess.run(["tar", "-x", "-C", root] + want, stdin=tar.stdout)
    tar.stdout.close()
    if tar.wait() != 0 or r.returncode != 0:
        raise RuntimeError(f"cannot unpack {' '.join(want)} from {deb}")


def module_sources(version):
    """MODULE_SOURCES unpacked from the source (its xz takes 10-20 s to
    read through), once for every architecture."""
    d = os.path.join(cache_root(), f"gpio-sim-src-{version}")
    with Lock(f"gpio-sim-src-{version}"):
        if not os.path.exists(os.path.join(d, ".af-unpacked")):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            members = [f"*/{p}" for p in MODULE_SOURCES]
            run(["tar", "-xf", KERNEL_TARBALL, "-C", d, "--strip-components=1", "--wildcards"] + members)
            open(os.path.join(d, ".af-unpacked"), "w").close()
    return d


def build_gpio_sim(a, root, abi, mod):
    """Compile gpio-sim and irq_sim from the source as one module against
    the headers unpacked in @root; return the .ko's path."""
    src = module_sources(kernel_version())
    os.makedirs(mod)
    for path, name in MODULE_SOURCES.items():
        shutil.copy(os.path.join(src, path), os.path.join(mod, name))
    for name, old, new in MODULE_PATCHES:
        with open(os.path.join(mod, name)) as f:
            text = f.read()
        if text.count(old) != 1:
            raise RuntimeError(f"{name} of this source does not hold the line vm.py changes: {old}")
        with open(os.path.join(mod, name), "w") as f:
            f.write(text.replace(old, new))
    open(os.path.join(mod, "Kbuild"), "w").write(MODULE_KBUILD)
    # The headers' Makefile includes the common headers by their installed,
    # absolute path; ours are unpacked in the cache.
    hdr = os.path.join(root, "usr", "src", f"linux-headers-{abi}")
    mk = os.path.join(hdr, "Makefile")
    text = open(mk).read()
    open(mk, "w").write(text.replace("/usr/src/", os.path.join(root, "usr", "src") + "/"))
    make = ["make", "-C", hdr, f"M={mod}", f"-j{os.environ.get('AF_VM_JOBS', '2')}", "modules"]
    if a["cross"]:
        make.append(f"CROSS_COMPILE={a['cross']}")
    run(make, stdout=subprocess.DEVNULL)
    return os.path.join(mod, "gpio-sim.ko")


def kernel(arch):
    choice = os.environ.get("AF_VM_KERNEL", "auto")
    if choice not in ("auto", "debian", "source"):
        raise RuntimeError(f"AF_VM_KERNEL={choice}: say auto, debian or source")
    if choice == "source":
        return source_kernel(arch)
    try:
        return debian_kernel(arch)
    except Skip as e:
        if choice == "debian":
            raise
        log(f"not Debian's kernel ({e}): building one from {KERNEL_PACKAGE}")
        return source_kernel(arch)


# ---- the programs ----------------------------------------------------------------


def cross_build(arch, source_root, build_root):
    """Cross-build the project for a foreign guest; return its build dir."""
    a = ARCHES[arch]
    if not a["cross_file"]:
        return build_root
    if not shutil.which(a["cross"] + "gcc"):
        raise Skip(f"no {a['cross']}gcc (apt-get install gcc-{a['triplet']})")
    pc = f"/usr/lib/{a['triplet']}/pkgconfig"
    for lib in ("liburing", "check"):
        if not os.path.exists(os.path.join(pc, lib + ".pc")):
            raise Skip(f"no {lib} for {a['deb_arch']} (dpkg --add-architecture "
                       f"{a['deb_arch']}; apt-get install {lib.replace('liburing', 'liburing-dev')}:{a['deb_arch']})")
    bdir = os.path.join(build_root, f"vm-{arch}")
    cross = os.path.join(HERE, a["cross_file"])
    opts = ["--cross-file", cross, "-Dwerror=true", "-Dvm=disabled", "-Dbench=true"]
    stamp = os.path.join(bdir, ".af-vm-options")
    want = " ".join(opts)
    if not os.path.exists(os.path.join(bdir, "build.ninja")) or \
            (os.path.exists(stamp) and open(stamp).read() != want):
        shutil.rmtree(bdir, ignore_errors=True)
        run(["meson", "setup", bdir, source_root] + opts, stdout=subprocess.DEVNULL)
        with open(stamp, "w") as f:
            f.write(want)
    jobs = os.environ.get("AF_VM_JOBS", "2")
    run(["ninja", "-C", bdir, f"-j{jobs}"] + guest_targets(bdir), stdout=subprocess.DEVNULL)
    return bdir


GUEST_TARGET = re.compile(r"^(tests/(vm/)?test-[\w-]+|bench/bench-switch|examples/gpio-button-daemon)$")


def guest_targets(bdir):
    """What the guest runs (programs(), gpio_files()), as ninja targets:
    the other benchmarks and examples would cost the cross-build a third
    more, and no guest runs them."""
    out = subprocess.run(["ninja", "-C", bdir, "-t", "targets", "all"], capture_output=True,
                         text=True, check=True).stdout
    names = [line.split(":")[0] for line in out.split("\n") if ": c_LINKER" in line]
    return [n for n in names if GUEST_TARGET.match(n)]


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def programs(bdir):
    """Guest suites: every Check suite the build made, the guest-only ones,
    and bench-switch (its figures are what the arm64 guest is for)."""
    progs = {}
    for path in sorted(glob.glob(os.path.join(bdir, "tests", "test-*")) +
                       glob.glob(os.path.join(bdir, "tests", "vm", "test-*"))):
        if os.access(path, os.X_OK) and is_elf(path):
            progs[os.path.basename(path)[len("test-"):]] = path
    bench = os.path.join(bdir, "bench", "bench-switch")
    if is_elf(bench):
        progs["bench-switch"] = bench
    only = os.environ.get("AF_VM_SUITES", "").split()
    if only:
        progs = {k: v for k, v in progs.items() if k in only}
    return progs


def elf_deps(path):
    """(interpreter, [NEEDED sonames]) read with readelf, which reads any
    architecture's ELF."""
    out = subprocess.run(["readelf", "-lW", "-d", path], capture_output=True, text=True).stdout
    interp = re.search(r"\[Requesting program interpreter: ([^\]]+)\]", out)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    return (interp.group(1) if interp else None), needed


DLOPENED = ["libgcc_s.so.1"]


def copy_libs(arch, progs, root, bdir):
    """Copy into @root the loader and every shared library @progs need,
    found the way the guest's loader will look for them."""
    t = ARCHES[arch]["triplet"]
    dirs = [f"/lib/{t}", f"/usr/lib/{t}", "/lib", "/usr/lib", os.path.join(bdir, "src")]
    libdir = os.path.join(root, "lib", t)
    os.makedirs(libdir, exist_ok=True)
    todo, seen = list(progs), set()

    def take(so):
        if so in seen:
            return
        seen.add(so)
        src = find_lib(so, dirs)
        shutil.copy(os.path.realpath(src), os.path.join(libdir, so))
        todo.append(src)

    # glibc dlopen()s libgcc_s for pthread_cancel()'s unwinding, so no
    # NEEDED entry names it; without it a cancelled thread aborts.
    for so in DLOPENED:
        take(so)
    while todo:
        interp, needed = elf_deps(todo.pop())
        if interp and interp not in seen:
            seen.add(interp)
            dst = root + interp
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(os.path.realpath(interp if not ARCHES[arch]["cross"] else
                                         find_lib(os.path.basename(interp), dirs)), dst)
            todo.append(dst)
        for so in needed:
            take(so)


def find_lib(so, dirs):
    for d in dirs:
        p = os.path.join(d, so)
        if os.path.exists(p):
            return p
    raise RuntimeError(f"shared library {so} not found in {dirs}")


def busybox(arch):
    """Debian's busybox-static for the guest's architecture: the host's own
    for x86_64, the arm64 package unpacked into the cache otherwise (it
    cannot be installed next to the host's)."""
    a = ARCHES[arch]
    if not a["cross"]:
        if not os.path.exists("/bin/busybox") or not is_elf("/bin/busybox"):
            raise Skip("no /bin/busybox (apt-get install busybox-static)")
        return "/bin/busybox"
    d = os.path.join(cache_root(), f"busybox-{a['deb_arch']}")
    bb = os.path.join(d, "bin", "busybox")
    with Lock(f"busybox-{a['deb_arch']}"):
        if not os.path.exists(bb):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            r = subprocess.run(["apt-get", "download", f"busybox-static:{a['deb_arch']}"],
                               cwd=d, stdout=sys.stderr, stderr=sys.stderr)
            debs = glob.glob(os.path.join(d, "busybox-static_*.deb"))
            if r.returncode != 0 or not debs:
                raise Skip(f"cannot download busybox-static:{a['deb_arch']} "
                           f"(dpkg --add-architecture {a['deb_arch']}; apt-get update)")
            run(["dpkg-deb", "-x", debs[0], d])
    return bb


def gpio_files(bdir, afdir):
    """What guest-gpio.sh runs besides the suites: itself, and the button
    daemon with its checks. Returns the programs among them."""
    src = os.path.dirname(os.path.dirname(HERE))
    for f in ("tests/vm/guest-gpio.sh", "examples/gpio-button-daemon-test.sh", "examples/test-lib.sh"):
        shutil.copy(os.path.join(src, f), afdir)
    daemon = os.path.join(bdir, "examples", "gpio-button-daemon")
    if not is_elf(daemon):
        return []
    shutil.copy(daemon, afdir)
    return [os.path.join(afdir, "gpio-button-daemon")]


def initramfs(arch, progs, bdir, path, modules):
    root = tempfile.mkdtemp(prefix=f"af-vm-{arch}-")
    # mkdtemp's 0700 would become the guest's "/": nobody could reach a file.
    os.chmod(root, 0o755)
    try:
        for d in ("bin", "proc", "sys", "dev", "tmp", "af"):
            os.makedirs(os.path.join(root, d))
        shutil.copy(busybox(arch), os.path.join(root, "bin", "busybox"))
        shutil.copy(os.path.join(HERE, "init.sh"), os.path.join(root, "init"))
        os.chmod(os.path.join(root, "init"), 0o755)
        dsts = gpio_files(bdir, os.path.join(root, "af"))
        for name, src in progs.items():
            dst = os.path.join(root, "af", name)
            shutil.copy(src, dst)
            dsts.append(dst)
        with open(os.path.join(root, "af", "suites"), "w") as f:
            f.write("\n".join(progs) + "\n")
        # init.sh loads these, in this order, before it mounts anything.
        with open(os.path.join(root, "af", "modules"), "w") as f:
            for m in modules:
                shutil.copy(m, os.path.join(root, "af", os.path.basename(m)))
                f.write(os.path.basename(m) + "\n")
        with open(os.path.join(root, "af", "libdir"), "w") as f:
            f.write(f"/lib/{ARCHES[arch]['triplet']}\n")
        copy_libs(arch, dsts, root, bdir)
        listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root,
                              input=listing, capture_output=True, check=True).stdout
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(cpio)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- booting and reading the console ---------------------------------------------


def ck_select():
    """Check's own selection of test cases, and AF_TEST_SCALE, handed to the
    guest: the kernel passes unknown name=value words of its command line
    to /init as its environment, and the suites inherit it."""
    words = ""
    for var in ("CK_RUN_SUITE", "CK_RUN_CASE", "AF_TEST_SCALE"):
        val = os.environ.get(var)
        if val:
            if '"' in val:
                raise RuntimeError(f"{var} holds a quote, which the kernel's command line cannot pass")
            words += f' {var}="{val}"' if " " in val else f" {var}={val}"
    return words


# Debian's kernel defends against side channels, zeroes every allocation and
# audits; emulated, that cost the x86_64 guest about 60% more CPU than these
# switches (a third of io, flag and signal's 78 qemu CPU seconds was
# mitigations, a third of the rest init_on_alloc and audit). None of it is
# something the suites test; tinyconfig builds none of it.
BOOT_ARGS = "mitigations=off init_on_alloc=0 audit=0"


def boot(arch, image, initrd, logpath):
    """Run the guest; return its console text, whether it was killed, and
    [(host seconds since boot, line)] stamped as each line arrived (the
    cases' own durations, which the guest's coarse clock cannot give)."""
    a = ARCHES[arch]
    # -nic none: no network card, so no boot ROM to wait for.
    cmd = [a["qemu"], "-accel", "tcg", *a["machine"], "-smp", "2", "-m", "1024", "-nic", "none",
           "-nographic", "-no-reboot", "-kernel", image, "-initrd", initrd,
           "-append", f"console={a['console']} panic=-1 loglevel=4 rdinit=/init {BOOT_ARGS} {a['append']}" + ck_select()]
    timeout = int(os.environ.get("AF_VM_TIMEOUT", "1200"))
    log("$ " + " ".join(cmd))
    t0, cpu0 = time.monotonic(), os.times()
    stamped = []
    with open(logpath, "wb") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        reader = threading.Thread(target=read_console, args=(p.stdout, out, t0, stamped))
        reader.start()
        try:
            p.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            timed_out = True
        reader.join()
    cpu = os.times()
    log(f"guest ran {time.monotonic() - t0:.0f} s, qemu used "
        f"{cpu.children_user + cpu.children_system - cpu0.children_user - cpu0.children_system:.0f} s of CPU"
        + (" and was killed (timeout)" if timed_out else ""))
    text = open(logpath, "rb").read().decode("utf-8", "replace").replace("\r", "")
    # The firmware's terminal escapes can share a line with the first marker.
    text = re.sub(r"^.*?(@@AF-)", r"\1", text, flags=re.M)
    return text, timed_out, stamped


def read_console(pipe, out, t0, stamped):
    for raw in pipe:
        out.write(raw)
        out.flush()
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        stamped.append((time.monotonic() - t0, re.sub(r"^.*?(@@AF-)", r"\1", line)))


def slowest(stamped, n=15):
    """The n cases that took longest, from the gaps between the console's
    TAP lines: where the guest's time goes. A suite that writes its TAP
    through a file (test-gpio, for its skips) shows as one long case."""
    took, last, suite = [], None, None
    for t, line in stamped:
        if line.startswith("@@AF-BEGIN "):
            suite, last = line.split()[1], t
        elif suite and TAP_LINE.match(line):
            took.append((t - last, f"{suite}: {case_name(True, TAP_LINE.match(line).group(2))}"))
            last = t
        elif line.startswith("@@AF-END "):
            suite = None
    if suite and stamped:
        took.append((stamped[-1][0] - last, f"{suite}: the case after the last one reported (unfinished)"))
    took.sort(reverse=True)
    return [f"{s:6.1f} s  {name}" for s, name in took[:n]]


TAP_LINE = re.compile(r"^(not ok|ok)\b\s*\d*\s*(?:-\s*)?(.*)$")


def report(arch, console, timed_out):
    """Turn the console into TAP: each suite's cases, renumbered, with the
    suite's name in front; a suite that crashed or exited non-zero without
    a failing case counts as one failure of its own."""
    cases = []  # (ok, description)
    kernel = re.search(r"^@@AF-KERNEL (.*)$", console, re.M)
    cases.append((bool(kernel), f"guest boots ({kernel.group(1) if kernel else 'no marker from /init'})"))
    suite, lines, plan = None, [], None
    for line in console.split("\n"):
        if line.startswith("@@AF-BEGIN "):
            suite, lines, plan = line.split()[1], [], None
            continue
        if suite is None:
            continue
        if line.startswith("@@AF-END "):
            rc = int(line.split()[2])
            finish(cases, suite, lines, plan, rc)
            suite = None
            continue
        m = TAP_LINE.match(line)
        if m:
            lines.append((m.group(1) == "ok", case_name(m.group(1) == "ok", m.group(2))))
        elif re.match(r"^1\.\.\d+", line):
            plan = int(line[3:].split()[0])
        elif line.startswith("# ") or line.startswith("@@AF-ERR "):
            lines.append((None, line))
    if suite is not None:
        finish(cases, suite, lines, plan, None)
    done = "@@AF-DONE" in console
    why = "timed out" if timed_out else "stopped before its last suite"
    cases.append((done, "guest runs every suite to the end" + ("" if done else f" ({why})")))
    if not done:
        tail = console.strip().split("\n")[-15:]
        cases.append((None, "\n".join("# " + t for t in tail)))
    n = sum(1 for ok, _ in cases if ok is not None)
    print(f"1..{n}")
    i = 0
    for ok, desc in cases:
        if ok is None:
            print(desc if desc.startswith("#") else "# " + desc)
            continue
        i += 1
        print(f"{'ok' if ok else 'not ok'} {i} - {desc}")
    return all(ok is not False for ok, _ in cases)


def case_name(ok, desc):
    # Check says "../tests/test-loop.c:tcase:test_name: Passed"; the file
    # is the suite's name already, and "Passed" says nothing.
    desc = re.sub(r"^\S*test-[\w-]+\.c:", "", desc)
    return desc[:-len(": Passed")] if ok and desc.endswith(": Passed") else desc


def finish(cases, suite, lines, plan, rc):
    seen = [(ok, d) for ok, d in lines if ok is not None]
    for ok, desc in lines:
        if ok is None:
            cases.append((None, desc[len("@@AF-ERR "):] if desc.startswith("@@AF-ERR ") else desc))
        else:
            cases.append((ok, f"{suite}: {desc}"))
    failed = any(not ok for ok, _ in seen)
    if rc is None:
        cases.append((False, f"{suite}: did not finish (the guest stopped or hung in it)"))
    elif plan is not None and plan != len(seen):
        cases.append((False, f"{suite}: planned {plan} cases, reported {len(seen)}"))
    elif rc == 77 and not seen:
        cases.append((True, f"{suite} # SKIP exit status 77"))
    elif rc != 0 and not failed:
        cases.append((False, f"{suite}: exited with status {rc}"))
    elif not seen:
        cases.append((rc == 0, f"{suite}: exits with status {rc}"))


# The armhf guest runs the same 440 cases as the others on a 32-bit kernel,
# but costs about 400 s of qemu CPU (the arm64 guest about 200): with it the
# VM part of scripts/test would not fit its 3 minutes with a warm cache.
OPT_IN = {"armhf": "AF_VM_ARMHF"}


def cmd_run(args):
    a = ARCHES[args.arch]
    var = OPT_IN.get(args.arch)
    if var and os.environ.get(var) != "1":
        print(f"1..0 # SKIP the {args.arch} guest runs only when asked ({var}=1)")
        return 0
    try:
        if not shutil.which(a["qemu"]):
            raise Skip(f"no {a['qemu']} (apt-get install qemu-system-"
                       f"{'x86' if args.arch == 'x86_64' else 'arm'})")
        for tool in ("cpio", "readelf"):
            if not shutil.which(tool):
                raise Skip(f"{tool} is missing")
        k = kernel(args.arch)
        bdir = cross_build(args.arch, args.source_root, args.build_root)
        progs = programs(bdir)
        busybox(args.arch)
    except Skip as e:
        print(f"1..0 # SKIP {e}")
        return 0
    if not progs:
        print("1..0 # SKIP no test programs in the build")
        return 0
    initrd = os.path.join(args.build_root, f"vm-{args.arch}.initrd.gz")
    initramfs(args.arch, progs, bdir, initrd, k.modules)
    logpath = os.path.join(args.build_root, f"vm-{args.arch}.log")
    console, timed_out, stamped = boot(args.arch, k.image, initrd, logpath)
    log(f"guest console: {logpath}")
    log("slowest cases (host seconds):\n" + "\n".join(slowest(stamped)))
    return 0 if report(args.arch, console, timed_out) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("arch", choices=ARCHES)
    r.add_argument("--source-root", required=True)
    r.add_argument("--build-root", required=True)
    k = sub.add_parser("kernel")
    k.add_argument("arch", choices=ARCHES)
    args = p.parse_args()
    if args.cmd == "kernel":
        try:
            k = kernel(args.arch)
            print("\n".join([k.image] + k.modules))
        except Skip as e:
            print(f"skip: {e}", file=sys.stderr)
            return 77
        return 0
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
