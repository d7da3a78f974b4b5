"""Benchmark the generated code for the relu bundle against ``sympy.lambdify``.

For q_star, c_star, lambda_L, lambda_M and gradient_rate over 10**6 batch sizes (float64,
``np.linspace(4, 1e6, 10**6)``) this times, best of ``--repeat`` runs with
``time.perf_counter``:

* the generated C kernels, loaded through the JIT cache (compile time reported separately);
* the generated numpy module;
* ``sympy.lambdify(B, expr, "numpy")`` of the same derived expressions;

and prints the speed ratios measured in this run, plus the effective memory traffic of the C
kernels (8 bytes read + 8 written per element) next to the bandwidth of a plain array copy
measured in the same run: a kernel far below the copy bandwidth is compute-bound (acos, sqrt
and division dominate), not memory-bound.

Run:  python benchmarks/bench_codegen.py [--n 1000000] [--repeat 7]
(set BNMFT_CACHE_DIR to keep the compiled kernel out of ~/.cache).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sympy as sp

from bnmft import __version__
from bnmft.codegen import generate, jit, load_c, load_numpy
from bnmft.derive.activation import activation
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B

BUNDLE = ("q_star", "c_star", "lambda_L", "lambda_M", "gradient_rate")


def best_time(fn, x, repeat: int) -> float:
    """Best wall time of ``fn(x)`` over ``repeat`` runs (after one warm-up call)."""
    fn(x)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best


def copy_bandwidth(n: int, repeat: int) -> float:
    """Bytes/s of ``np.copyto`` on n float64 (8 read + 8 written per element)."""
    src, dst = np.linspace(0.0, 1.0, n), np.empty(n)
    t = best_time(lambda s: np.copyto(dst, s), src, repeat)
    return 16 * n / t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**6, help="number of batch sizes")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement")
    args = parser.parse_args()

    closed = derive(activation("relu")).closed
    quantities = [closed[name] for name in BUNDLE]
    c_src = generate(quantities, lang="c", module="relu_bench", activation_name="relu")
    np_src = generate(quantities, lang="numpy", module="relu_bench", activation_name="relu")

    t0 = time.perf_counter()
    c_mod = load_c(c_src, "relu_bench")  # compiles on the first run, then reuses the cache
    t_load = time.perf_counter() - t0
    np_mod = load_numpy(np_src, "relu_bench")
    lambdified = {q.name: sp.lambdify(B, q.expr, "numpy") for q in quantities}

    x = np.linspace(4.0, 1e6, args.n)
    compiler = jit._compiler_version(tuple(jit.find_compiler()))
    print(f"bnmft {__version__}, numpy {np.__version__}, sympy {sp.__version__}; {compiler}")
    print(f"n = {args.n} float64 batch sizes in [4, 1e6], best of {args.repeat} runs")
    print(f"C load (compile or cache hit) {t_load * 1e3:.1f} ms, excluded from timings\n")

    header = (
        f"{'quantity':<14}{'C ms':>9}{'numpy ms':>10}{'lambdify ms':>12}"
        f"{'C/lambdify':>12}{'numpy/lambdify':>16}{'C GB/s':>9}{'max rel diff':>14}"
    )
    print(header)
    print("-" * len(header))
    totals, moved = np.zeros(3), 0
    for name in BUNDLE:
        fns = (getattr(c_mod, name), getattr(np_mod, name), lambdified[name])
        times = np.array([best_time(f, x, args.repeat) for f in fns])
        totals += times
        values = [f(x) for f in fns]
        # lambdify of a constant returns a bare scalar (fills no array): no fair ratio.
        fills = np.shape(values[2]) == x.shape
        ref = np.broadcast_to(values[2], x.shape)
        scale = np.where(ref == 0, 1.0, np.abs(ref))
        diff = max(float(np.max(np.abs(v - ref) / scale)) for v in values[:2])
        # Bytes each C kernel must move: read B, write out (a constant only writes).
        nbytes = (16 if fills else 8) * args.n
        moved += nbytes
        gbs = nbytes / times[0] / 1e9
        ratios = (
            f"{times[2] / times[0]:>11.1f}x{times[2] / times[1]:>15.1f}x"
            if fills
            else f"{'n/a':>12}{'n/a':>16}"
        )
        print(
            f"{name:<14}{times[0] * 1e3:>9.2f}{times[1] * 1e3:>10.2f}{times[2] * 1e3:>12.2f}"
            f"{ratios}{gbs:>9.2f}{diff:>14.1e}"
        )
    print("-" * len(header))
    gbs = moved / totals[0] / 1e9
    print(
        f"{'bundle':<14}{totals[0] * 1e3:>9.2f}{totals[1] * 1e3:>10.2f}{totals[2] * 1e3:>12.2f}"
        f"{totals[2] / totals[0]:>11.1f}x{totals[2] / totals[1]:>15.1f}x{gbs:>9.2f}"
    )
    bw = copy_bandwidth(args.n, args.repeat) / 1e9
    bound = "memory-bound" if gbs > 0.5 * bw else "compute-bound (acos, sqrt, division)"
    print(f"\nmemory: np.copyto moves {bw:.1f} GB/s here (8 B read + 8 B written per element);")
    print(f"the C bundle moves {gbs:.2f} GB/s, {100 * gbs / bw:.0f}% of that: {bound}.")
    print("n/a: lambdify returns a bare scalar for a constant (q_star) and fills no array.")


if __name__ == "__main__":
    main()
