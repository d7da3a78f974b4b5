"""Benchmark the generated sphere-quadrature modules of a phi with a power kink whose phi' is
unbounded (default ``Max(x - 0.2, 0)**0.75``): CPU time and accuracy of the module as
generated (phi, phi' next to a kink from the node's offset to it) against the same module
with the offsets switched off (phi, phi' at x, x - k formed in float64), per batch size.

For each batch size B this times, interleaved (``--rounds`` rounds after a warm-up round),
``module.all(B)`` of the numpy module with and without the offsets and the C fused kernel,
by ``time.process_time`` (CPU seconds; the machine may be shared: the load average is
printed), and prints the medians and each route's largest relative error against the
project's mpmath route (``bnmft.analyze`` at 16 digits).

Run:  python benchmarks/bench_codegen_kinks.py [--rounds 5] [--activation 'Max(x-0.2,0)**0.75']
(set BNMFT_CACHE_DIR to keep the compiled kernels out of ~/.cache).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import mpmath
import numpy as np

from bnmft.codegen import load_c, load_numpy
from bnmft.codegen import quadrature as Q
from bnmft.derive.activation import activation

BATCH = (4, 5, 7, 33, 1000, 10**6)
#: The line of the numpy template that applies the offsets; emptied to switch them off.
OFFSETS = "        for i, ((lf, ld), (rf, rd)) in enumerate(_SIDES):"


def _worst(values: dict, ref: dict, j: int) -> float:
    out = 0.0
    for name, vals in ref.items():
        r = mpmath.mpf(vals[j])
        if r:
            out = max(out, float(abs(mpmath.mpf(float(values[name][0])) - r) / abs(r)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--activation", default="Max(x-0.2,0)**0.75")
    args = ap.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    act = activation(args.activation)
    t = time.process_time()
    plan = Q.verify(act, "bench_k", Q.choose_panel(act, "bench_k"), grid=())
    t = time.process_time() - t
    source = Q.generate_quadrature(act, lang="numpy", module="bench_k", plan=plan)
    text = source["bench_k.py"]
    if OFFSETS not in text:
        raise SystemExit(f"{args.activation}: no power kink (the module has no offsets)")
    py = load_numpy(source)
    plain = load_numpy(text.replace(OFFSETS, OFFSETS.replace("_SIDES)", "_SIDES[:0])")))
    c = load_c(Q.generate_quadrature(act, lang="c", module="bench_k", plan=plan))
    ref = Q._reference(act, BATCH)
    print(f"{args.activation}: panel {plan.panel_z} in z, verified to "
          f"{min(plan.verified.values()):.1f} digits at B = 4 ... 10^6 (panel choice and "
          f"verification {t:.0f} s CPU); {args.rounds} interleaved rounds, CPU ms, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'B':>8s} {'numpy ms':>9s} {'no-offset ms':>13s} {'C ms':>8s} "
          f"{'err numpy':>10s} {'err no-offset':>14s} {'err C':>8s}")
    for j, Bv in enumerate(BATCH):
        routes = {"numpy": lambda: py.all(float(Bv)), "plain": lambda: plain.all(float(Bv)),
                  "C": lambda: c.all([float(Bv)])}
        times = {k: [] for k in routes}
        results = {}
        for r in range(args.rounds + 1):
            for k, fn in routes.items():
                t = time.process_time()
                results[k] = fn()
                if r:
                    times[k].append(time.process_time() - t)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        for k in ("numpy", "plain"):
            results[k] = {n: np.atleast_1d(v) for n, v in results[k].items()}
        print(f"{Bv:>8d} {med['numpy']:>9.1f} {med['plain']:>13.1f} {med['C']:>8.1f} "
              f"{_worst(results['numpy'], ref, j):>10.1e} "
              f"{_worst(results['plain'], ref, j):>14.1e} {_worst(results['C'], ref, j):>8.1e}")


if __name__ == "__main__":
    main()
