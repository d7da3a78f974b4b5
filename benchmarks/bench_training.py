"""One SGD step of the batchnorm MLP (``numerics/training.py``) with BLAS held to one thread
against BLAS as configured (its default thread count).

The products are ``B x N`` by ``N x N`` with ``N = 384``: small enough that on shared cores a
threaded BLAS spends its time synchronising. Each round times ``--steps`` SGD steps of each
variant in turn (A B A B ...), so load changes affect both alike; prints medians, minima and
the ratio of the medians, per batch size.

Run:  python benchmarks/bench_training.py [--repeat 9] [--steps 10] [--depth 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bnmft.numerics import training as tr


def step_time(net, x, y, steps: int, threads) -> float:
    """Seconds per SGD step (forward, backward, update) with BLAS at ``threads``."""
    with tr.limited_blas(threads):
        t0 = time.perf_counter()
        for _ in range(steps):
            _, grads, _ = tr.loss_and_grads(net, x, y)
            tr.sgd_step(net, grads, 1e-4)
        return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--steps", type=int, default=10, help="SGD steps per timing (default 10)")
    parser.add_argument("--depth", type=int, default=10, help="hidden layers (default 10)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    variants = {"BLAS 1 thread": 1, "BLAS default threads": None}
    print(f"median of {args.repeat} interleaved rounds of {args.steps} SGD steps, depth "
          f"{args.depth}, width 384, float32")
    print(f"{'B':>5s} {'variant':22s} {'median ms':>10s} {'min ms':>8s}")
    for B in (32, 256):
        net = tr.init_mlp(args.depth, 384, 784, 10, eps=1e-3, seed=0)
        x = rng.standard_normal((B, 784)).astype(np.float32)
        y = rng.integers(0, 10, B)
        for threads in variants.values():
            step_time(net, x, y, 2, threads)  # warm up
        times = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, threads in variants.items():
                times[name].append(step_time(net, x, y, args.steps, threads))
        med = {name: statistics.median(ts) for name, ts in times.items()}
        for name, ts in times.items():
            print(f"{B:5d} {name:22s} {1e3 * med[name]:10.2f} {1e3 * min(ts):8.2f}")
        ratio = med["BLAS default threads"] / med["BLAS 1 thread"]
        print(f"{B:5d} default / 1 thread: {ratio:.2f}x")


if __name__ == "__main__":
    main()
