#!/usr/bin/env python3
"""Count TAP test cases across meson build directories.

meson's own summary counts test programs; a Check suite is one program with
many test cases, so we read each program's TAP output from testlog.json.
A program that failed without reporting a failing case (a crash, a
timeout) counts as one failure. Prints per-build lines, then the one
summary line scripts/test ends with.
"""
import json
import re
import sys

OK = re.compile(r"^ok\b")
NOT_OK = re.compile(r"^not ok\b")
SKIP = re.compile(r"#\s*skip", re.IGNORECASE)


def log_of(build):
    """DIR, or DIR@SETUP for a run with `meson test --setup SETUP`."""
    if "@" in build:
        d, setup = build.split("@", 1)
        return f"{d}/meson-logs/testlog-{setup}.json"
    return f"{build}/meson-logs/testlog.json"


def count(build):
    passed = failed = skipped = 0
    try:
        lines = open(log_of(build)).read().splitlines()
    except OSError:
        return 0, 1, 0, [f"{build}: no test log"]
    notes = []
    for line in lines:
        rec = json.loads(line)
        p = f = s = 0
        for out in (rec.get("stdout") or "").splitlines():
            if NOT_OK.match(out):
                f += 1
            elif OK.match(out):
                if SKIP.search(out):
                    s += 1
                else:
                    p += 1
        result = rec.get("result")
        if result == "SKIP" and p + f + s == 0:
            s = 1
            # A whole program skipped says why on its plan line (the
            # guests: "1..0 # SKIP no qemu-system-aarch64 (...)").
            why = re.search(r"^1\.\.0\s*#\s*skip\s*(.*)$", rec.get("stdout") or "",
                            re.IGNORECASE | re.MULTILINE)
            if why:
                notes.append(f"skipped: {build}: {rec['name']}: {why.group(1)}")
        elif p + f + s == 0:
            # A plain (non-TAP) test: one case, judged by meson's result.
            if result in ("OK", "EXPECTEDFAIL"):
                p = 1
            else:
                f = 1
        elif result not in ("OK", "SKIP", "EXPECTEDFAIL") and f == 0:
            f = 1
        if f:
            notes.append(f"failed: {build}: {rec['name']}: {result}")
        passed, failed, skipped = passed + p, failed + f, skipped + s
    return passed, failed, skipped, notes


def main(builds):
    total = [0, 0, 0]
    for b in builds:
        if b.endswith(":build-failed"):
            name = b.split(":")[0]
            print(f"{name}: build failed")
            total[1] += 1
            continue
        p, f, s, notes = count(b)
        print(f"{b}: {p} passed, {f} failed, {s} skipped")
        for n in notes:
            print(f"  {n}")
        total = [total[0] + p, total[1] + f, total[2] + s]
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] or sum(total) == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
