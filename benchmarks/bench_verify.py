"""`bnmft verify ACT --digits 30` as a whole process (default batch sizes 4 ... 10^6).

Each run is a fresh `python -m bnmft verify ACT --digits 30 --quiet`; the script records its
wall time and the CPU time of the child process (user + system, from `getrusage`: on a
machine shared with other jobs the CPU time is the steadier figure), checks that it exits 0
and that its last line reports every check passing, and prints the medians over R rounds
(default 3) per activation (default tanh, erf, relu), with the range of the 1-minute load
average seen at the start of the runs (the machine's other work inflates both times).

With `--baseline PYTHON` the same command is also run with another interpreter, one in
which a previous version of bnmft is installed (e.g. `pip install` of an older commit into
a separate virtual environment), interleaved A B A B ..., and the ratios of the medians are
printed (baseline / this version).

Run: python benchmarks/bench_verify.py [ACT ...] [--rounds R] [--baseline PYTHON]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


def run_once(python: str, act: str) -> tuple[float, float, str]:
    """``(wall, cpu, last line)`` of one `verify` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", "bnmft", "verify", act, "--digits", "30", "--quiet"],
                          capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = proc.stdout.strip().splitlines()
    last = lines[-1] if lines else proc.stderr.strip()
    if proc.returncode != 0:
        raise SystemExit(f"{python} verify {act}: exit status {proc.returncode}: {last}")
    return wall, cpu, last


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("activations", nargs="*", default=["tanh", "erf", "relu"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", metavar="PYTHON", help="interpreter with a previous bnmft")
    args = ap.parse_args(argv)
    versions = {"this": sys.executable}
    if args.baseline:
        versions["baseline"] = args.baseline
    print(f"bnmft verify ACT --digits 30, whole process, {args.rounds} rounds, medians")
    for act in args.activations:
        times = {name: ([], []) for name in versions}
        loads = []
        for _ in range(args.rounds):
            for name, python in versions.items():  # interleaved: A B A B ...
                loads.append(os.getloadavg()[0])
                wall, cpu, last = run_once(python, act)
                if "checks agree" not in last or " of " not in last:
                    raise SystemExit(f"{name} verify {act}: unexpected summary: {last}")
                passed, total = last.split(" checks")[0].split(" of ")
                if passed != total:
                    raise SystemExit(f"{name} verify {act}: {last}")
                times[name][0].append(wall)
                times[name][1].append(cpu)
        med = {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in
               times.items()}
        line = f"{act:10s} this: wall {med['this'][0]:7.2f} s  cpu {med['this'][1]:7.2f} s"
        if "baseline" in med:
            b = med["baseline"]
            line += (f"   baseline: wall {b[0]:7.2f} s  cpu {b[1]:7.2f} s   ratio wall "
                     f"{b[0] / med['this'][0]:.2f}  cpu {b[1] / med['this'][1]:.2f}")
        line += f"   load {min(loads):.1f}-{max(loads):.1f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
