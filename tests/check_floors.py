#!/usr/bin/env python3
"""Floor checks (docs/architecture.md).

  check_floors.py includes SOURCE_ROOT   every #include "x/y.h" in a floor's files names a header
                                          of that floor or of a floor it may use
  check_floors.py ldd PROGRAM            PROGRAM (linked with the tape + dists floors only)
                                          loads no PLplot, cfitsio or FFTW
Exit 0 when the check holds, 1 with one line per violation otherwise."""
import os
import re
import subprocess
import sys

# folder -> floor; and floor -> floors it may include (its own included)
FLOOR_OF = [  # longest prefix first
    ("lib/io/", "io"), ("lib/eval/", "eval"), ("lib/sim/", "sim"), ("lib/", "core"),
    ("autograd/", "autograd"), ("dists/", "dists"), ("models/", "models"),
    ("experiment/", "experiment"),
    ("tools/", "top"), ("examples/", "top"), ("bench/", "top"),
]
MAY_USE = {
    "core": {"core"},
    "io": {"core", "io"},
    "eval": {"core", "eval"},
    "sim": {"core", "io", "sim"},
    "autograd": {"core", "autograd"},
    "dists": {"core", "autograd", "dists"},
    "models": {"core", "io", "eval", "autograd", "dists", "models"},
    "experiment": {"core", "io", "eval", "sim", "autograd", "dists", "models", "experiment"},
    "top": {"core", "io", "eval", "sim", "autograd", "dists", "models", "experiment", "top"},
}


def floor_of(path):
    for prefix, floor in FLOOR_OF:
        if path.startswith(prefix):
            return floor
    return None


def check_includes(root):
    bad = []
    n = 0
    for folder in ("lib", "autograd", "dists", "models", "experiment", "tools", "examples", "bench"):
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for f in files:
                if not f.endswith((".c", ".h")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                me = floor_of(rel)
                with open(os.path.join(root, rel), encoding="utf-8") as fh:
                    for lineno, line in enumerate(fh, 1):
                        m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                        if not m:
                            continue
                        target = floor_of(m.group(1))
                        n += 1
                        if target is not None and target not in MAY_USE[me]:
                            bad.append(f"{rel}:{lineno}: floor '{me}' includes {m.group(1)} "
                                       f"(floor '{target}')")
    if n == 0:
        bad.append(f"no include found under {root}: wrong source root?")
    return bad, n


def check_ldd(program):
    out = subprocess.run(["ldd", program], capture_output=True, text=True, check=True).stdout
    bad = [f"{program} loads {line.split()[0]}" for line in out.splitlines()
           if re.search(r"plplot|cfitsio|fftw", line)]
    if "libbliss-dists" not in out:
        bad.append(f"{program} does not load libbliss-dists (not linked per floor?)")
    return bad, out.count("\n")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("includes", "ldd"):
        print(__doc__)
        return 2
    bad, n = (check_includes if sys.argv[1] == "includes" else check_ldd)(sys.argv[2])
    for b in bad:
        print(b)
    print(f"{sys.argv[1]}: {n} checked, {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
