"""Closed forms in `bnmft.analyze` at 12 digits: float64 kernels vs mpmath at every batch size.

For relu, leaky_relu:0.2, alpha_relu:1.5 and Max(x,0)**1.5, the same N batch sizes from 4 to
10^6 (default 10,000, spread geometrically) are evaluated in library use, warm, by

* A, the mpmath route: `bnmft.numerics.analyze(derivation, sizes, 12, float_kernels=False)`,
  the closed forms in mpmath at two precisions for each batch size;
* B, the default route: `bnmft.analyze(derivation, sizes, 12)`, float64 kernels over all
  batch sizes at once (mpmath where a value cannot be certified).

Runs are interleaved A B A B ... (R rounds, default 3) after one warm-up call of each on a
few batch sizes; the script prints the median time per batch size of each, their ratio,
and checks every number of the last two runs: the same text at 12 digits, and agreement
to at least the digits B claims.

A last line times a kinked phi without closed forms (elu) on the 853 distinct batch sizes
``np.unique(np.geomspace(4, 1e6, 1024).astype(int))`` in CPU time (``time.process_time``),
interleaved: A, the float64 sphere quadrature at every batch size (interpolation in 1/B off;
vectorised over the batch sizes), B, the default (the moments interpolated in 1/B for
B >= 12, ``numerics/binterp.py``, from 17 nodes computed in one vectorised pass); it prints
both per batch size, the load average, and the worst agreement of B with A beyond the smaller
claim. ``--kinked SPEC`` (repeatable) times other phi on the same route (default elu).

Run: python benchmarks/bench_analyze.py [--sizes N] [--rounds R] [--kinked-only] [--kinked SPEC]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import bnmft
from bnmft.numerics import agreeing_digits
from bnmft.numerics import analyze as analyze_numerics

ACTIVATIONS = ["relu", "leaky_relu:0.2", "alpha_relu:1.5", "Max(x,0)**1.5"]
DIGITS = 12
KERNEL_NOTES = ("float64", "extended precision")


def batch_sizes(n: int, lo: int = 4, hi: int = 10**6) -> list[int]:
    """``n`` distinct integers from ``lo`` to ``hi``, spread geometrically (dense at small B)."""
    k = n
    while True:
        grid = np.unique(np.rint(np.geomspace(lo, hi, k)).astype(np.int64))
        if len(grid) >= n:
            break
        k = int(k * 1.1) + 1
    pick = np.unique(np.rint(np.linspace(0, len(grid) - 1, n)).astype(int))
    return [int(b) for b in grid[pick]]


def run_old(deriv, sizes):
    return analyze_numerics(deriv, sizes, DIGITS, float_kernels=False)


def run_new(deriv, sizes):
    return bnmft.analyze(deriv, sizes, DIGITS)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def compare(old, new) -> tuple[int, int, int, float]:
    """``(numbers, from the kernels, text differences, worst agreement minus claim)``."""
    total = kernels = differ = 0
    worst = float("inf")
    for a, b in zip(old, new):
        assert a.batch_size == b.batch_size
        for name, num in b.numbers.items():
            ref = a.numbers[name]
            total += 1
            if num.text(DIGITS) != ref.text(DIGITS) or a.bsb1_stable != b.bsb1_stable:
                differ += 1
            if num.note in KERNEL_NOTES:
                kernels += 1
                worst = min(worst, agreeing_digits(num.value, ref.value) - num.digits)
    return total, kernels, differ, worst


KINKED = "elu"


def kinked_line(rounds: int, spec: str = KINKED) -> None:
    """The elu line (see the module docstring)."""
    import os

    from bnmft.numerics import binterp

    sizes = [int(b) for b in np.unique(np.geomspace(4, 1e6, 1024).astype(int))]
    deriv = bnmft.derivation(spec)
    keep = binterp.MIN_COUNT

    def per_b():
        binterp.MIN_COUNT = 10**9
        try:
            return bnmft.analyze(deriv, sizes, DIGITS)
        finally:
            binterp.MIN_COUNT = keep

    def interpolated():
        return bnmft.analyze(deriv, sizes, DIGITS)

    per_b(), interpolated()  # warm
    t_a, t_b = [], []
    for _ in range(rounds):
        t0 = time.process_time()
        old = per_b()
        t_a.append(time.process_time() - t0)
        t0 = time.process_time()
        new = interpolated()
        t_b.append(time.process_time() - t0)
    a = statistics.median(t_a) / len(sizes) * 1e3
    b = statistics.median(t_b) / len(sizes) * 1e3
    worst = min(agreeing_digits(nb.value, na.value) - min(nb.digits, na.digits)
                for ra, rb in zip(old, new) for name, nb in rb.numbers.items()
                if (na := ra.numbers[name]).value and nb.value and nb.digits != float("inf"))
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{spec} ({len(sizes)} B, CPU, medians of {rounds}): per-B quadrature {a:.3f} ms/B, "
          f"interpolated in 1/B {b:.3f} ms/B, {a / b:.1f}x; agreeing {worst:+.2f} digits "
          f"beyond the claims at worst; load {load}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, default=10_000, help="batch sizes (default 10,000)")
    ap.add_argument("--rounds", type=int, default=3, help="A B rounds (default 3)")
    ap.add_argument("--kinked-only", action="store_true", help="only the elu line")
    ap.add_argument("--kinked", action="append", metavar="SPEC",
                    help="kinked phi to time (repeatable; default elu)")
    args = ap.parse_args()
    kinked = args.kinked or [KINKED]
    if args.kinked_only:
        for spec in kinked:
            kinked_line(args.rounds, spec)
        return
    sizes = batch_sizes(args.sizes)
    print(f"{len(sizes):,} batch sizes from {sizes[0]} to {sizes[-1]:,}, {DIGITS} digits, "
          f"{args.rounds} interleaved rounds, medians")
    print(f"{'activation':16s} {'mpmath ms/B':>12s} {'kernels ms/B':>13s} {'ratio':>8s}   check")
    for spec in ACTIVATIONS:
        deriv = bnmft.derivation(spec)
        run_old(deriv, sizes[:16])  # warm caches (lambdified and compiled forms)
        run_new(deriv, sizes[:16])
        t_old, t_new = [], []
        for _ in range(args.rounds):
            dt, old = timed(run_old, deriv, sizes)
            t_old.append(dt)
            dt, new = timed(run_new, deriv, sizes)
            t_new.append(dt)
        a = statistics.median(t_old) / len(sizes) * 1e3
        b = statistics.median(t_new) / len(sizes) * 1e3
        total, kernels, differ, worst = compare(old, new)
        check = (f"{differ} of {total:,} printed differently; {kernels:,} from the kernels, "
                 f"agreeing {worst:+.2f} digits beyond their claims at worst")
        print(f"{spec:16s} {a:12.4f} {b:13.4f} {a / b:7.1f}x   {check}", flush=True)
    for spec in kinked:
        kinked_line(args.rounds, spec)


if __name__ == "__main__":
    main()
