"""Benchmark the generated sphere-quadrature modules of tanh (no closed forms) against
``bnmft.analyze(..., digits=12)``, per batch size, interleaved.

For each batch size B this times, in turn (``--rounds`` times after a warm-up round), one
evaluation of every quantity at that single B by

* ``numpy``: the generated numpy module, ``module.all(B)``;
* ``C``: the generated C99 fused kernel through the loader, ``module.all([B])``;
* ``analyze``: ``bnmft.analyze(derivation, [B], digits=12)`` (float64 Gegenbauer/Funk-Hecke
  route with error estimates).

Each route is reported by its median (minimum too) and the ratios of the medians; the
largest relative difference between the generated C values and analyze's is printed as well.

Run:  python benchmarks/bench_codegen_quadrature.py [--rounds 5] [--activation tanh]
(set BNMFT_CACHE_DIR to keep the compiled kernels out of ~/.cache).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import bnmft
from bnmft.codegen import load_c, load_numpy
from bnmft.codegen import quadrature as Q
from bnmft.derive.activation import activation

BATCH = (4, 8, 32, 64, 1000, 10**5, 10**6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--activation", default="tanh")
    args = ap.parse_args()
    act = activation(args.activation)
    plan = Q.plan_for(act)
    py = load_numpy(Q.generate_quadrature(act, lang="numpy", module="bench_q", plan=plan))
    c = load_c(Q.generate_quadrature(act, lang="c", module="bench_q", plan=plan))
    deriv = bnmft.derivation(args.activation)
    names = [q.name for q in deriv.quantities]
    print(f"{args.activation}: panel {plan.panel_z} in z, verified to "
          f"{min(plan.verified.values()):.1f} digits; {args.rounds} interleaved rounds")
    print(f"{'B':>8s} {'numpy ms':>10s} {'C ms':>9s} {'analyze ms':>11s} "
          f"{'analyze/numpy':>14s} {'analyze/C':>10s} {'max rel diff C-analyze':>23s}")
    for Bv in BATCH:
        routes = {
            "numpy": lambda: py.all(float(Bv)),
            "C": lambda: c.all([float(Bv)]),
            "analyze": lambda: bnmft.analyze(deriv, [Bv], digits=12)[0],
        }
        times = {k: [] for k in routes}
        results = {}
        for r in range(args.rounds + 1):
            for k, fn in routes.items():
                t = time.perf_counter()
                results[k] = fn()
                if r:
                    times[k].append(time.perf_counter() - t)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        diff = max(
            abs(float(results["C"][n][0]) - float(results["analyze"].numbers[n].value))
            / max(abs(float(results["analyze"].numbers[n].value)), 1e-300)
            for n in names)
        print(f"{Bv:>8d} {med['numpy']:>10.2f} {med['C']:>9.2f} {med['analyze']:>11.2f} "
              f"{med['analyze'] / med['numpy']:>14.2f} {med['analyze'] / med['C']:>10.2f} "
              f"{diff:>23.1e}")
        mins = {k: 1e3 * min(v) for k, v in times.items()}
        print(f"{'(min)':>8s} {mins['numpy']:>10.2f} {mins['C']:>9.2f} {mins['analyze']:>11.2f}")


if __name__ == "__main__":
    main()
