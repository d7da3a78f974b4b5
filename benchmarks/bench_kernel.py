"""Cost of the depth-L BN kernel (`bnmft.kernel`, ReLU, Laplace route) and how it grows.

1. Growth: the kernel at 1e-8 per layer for several (n, B, depth), interleaved rounds (A B C
   ... A B C ...), medians; the cost per block pair and layer is printed, and each cost's
   ratio to the first configuration.
2. Against Monte Carlo of a wide network at equal accuracy: one sampled network of width W
   (the same layer maps, batchnorm per batch) gives each kernel entry with a standard error
   s(W); the error falls like 1/sqrt(samples), so reaching the Laplace route's accuracy
   needs (s / accuracy)^2 times as many samples. Both are timed interleaved on the same
   inputs; the ratio printed is (Monte Carlo time scaled to equal accuracy) / (Laplace time).
   Finite-width bias (O(1/W)) is ignored, which favours Monte Carlo.
3. Worker processes: the same kernel (n = 300, depth 2) in one process and in two
   (``workers=2``), interleaved, medians and their ratio.
4. With --goal: the depth-10 kernel of 1,000 inputs (B = 10, 100 batches, 5,050 block pairs
   per layer) at 1e-8, timed once (``--workers N`` worker processes, default 1): wall time and
   CPU time summed over the processes.

Run: python benchmarks/bench_kernel.py [--rounds 3] [--goal [--workers 2]] [--only-goal]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import time

import numpy as np

from bnmft.numerics import kernel as K
from bnmft.numerics.montecarlo import batchnorm

TOL = 1e-8


def _inputs(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def _laplace(n, B, depth, tol=None, workers=1):
    X = _inputs(n)
    t = time.perf_counter()
    res = K.kernel("relu", X, B, depth=depth, tol=TOL * depth if tol is None else tol,
                   workers=workers)
    return time.perf_counter() - t, res


def _monte_carlo(X, B, depth, width, seed):
    """One wide network: the empirical kernel of its last layer (time, matrix)."""
    rng = np.random.default_rng(seed)
    n, d = X.shape
    t = time.perf_counter()
    h = rng.standard_normal((width, d)) @ X.T / math.sqrt(d)
    for _ in range(depth):
        f = np.concatenate([np.maximum(batchnorm(h[:, b:b + B]), 0.0)
                            for b in range(0, n, B)], axis=1)
        Kw = f.T @ f / width
        h = rng.standard_normal((width, width)) @ f / math.sqrt(width)
    return time.perf_counter() - t, Kw


def growth(rounds: int) -> None:
    configs = [(100, 10, 1), (200, 10, 1), (100, 5, 1), (100, 20, 1), (100, 10, 2)]
    times = {c: [] for c in configs}
    acc = {}
    for _ in range(rounds):
        for c in configs:
            dt, res = _laplace(*c)
            times[c].append(dt)
            acc[c] = res.accuracy
    base = None
    print("n     B   depth  pairs/layer  median s   ms per pair-layer  ratio  accuracy")
    for (n, B, L) in configs:
        nb = n // B
        pairs = nb * (nb + 1) // 2
        med = statistics.median(times[(n, B, L)])
        per = 1e3 * med / (pairs * L)
        base = base or med
        print(f"{n:<5d} {B:<3d} {L:<6d} {pairs:<12d} {med:<10.2f} {per:<18.2f} "
              f"{med / base:<6.2f} {acc[(n, B, L)]:.1e}")


def versus_monte_carlo(rounds: int, n: int = 100, B: int = 10, depth: int = 2,
                       width: int = 1000) -> None:
    X = _inputs(n)
    tl, tm, ests = [], [], []
    for r in range(rounds):
        dt, res = _laplace(n, B, depth)
        tl.append(dt)
        dt, Kw = _monte_carlo(X, B, depth, width, seed=r)
        tm.append(dt)
        ests.append(Kw)
    scale = np.sqrt(np.outer(np.diag(res.matrix), np.diag(res.matrix)))
    # standard error of one network's entries, relative to sqrt(K_ii K_jj), from the spread
    s = float(np.median(np.std(np.array(ests), axis=0, ddof=1) / scale))
    need = (s / max(res.accuracy, 1e-16)) ** 2
    ml, mm = statistics.median(tl), statistics.median(tm)
    print(f"Laplace route: {ml:.2f} s (median of {rounds}), accuracy {res.accuracy:.1e}")
    print(f"one network of width {width}: {mm:.3f} s, standard error {s:.1e} (relative, "
          f"median entry)")
    print(f"networks needed for {res.accuracy:.1e}: {need:.2e}; Monte Carlo / Laplace time "
          f"at equal accuracy: {need * mm / ml:.2e}")


def worker_processes(rounds: int, n: int = 300, B: int = 10, depth: int = 2) -> None:
    times = {1: [], 2: []}
    for _ in range(rounds):
        for w in (1, 2):
            dt, res = _laplace(n, B, depth, workers=w)
            times[w].append(dt)
    m1, m2 = statistics.median(times[1]), statistics.median(times[2])
    print(f"n = {n}, B = {B}, depth {depth}: one process {m1:.2f} s, two worker processes "
          f"{m2:.2f} s (medians of {rounds}): ratio {m1 / m2:.2f}")


def _cpu() -> float:
    """CPU seconds (user + sys) of this process and of its finished worker processes."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def goal(workers: int = 1) -> None:
    load = os.getloadavg()[0]
    cpu = _cpu()
    dt, res = _laplace(1000, 10, 10, tol=TOL, workers=workers)
    cpu = _cpu() - cpu
    print(f"depth-10 ReLU BN kernel of 1,000 inputs (B = 10, workers={workers}): {dt:.1f} s, "
          f"CPU {cpu:.1f} s (all processes), accuracy {res.accuracy:.1e}, load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--goal", action="store_true")
    ap.add_argument("--only-goal", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if not args.only_goal:
        growth(args.rounds)
        print()
        versus_monte_carlo(args.rounds)
        print()
        worker_processes(args.rounds)
    if args.goal or args.only_goal:
        print()
        goal(args.workers)


if __name__ == "__main__":
    main()
