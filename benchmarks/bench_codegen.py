"""Benchmark the generated code for the relu bundle: every route, interleaved.

For q_star, c_star, lambda_L, lambda_M and gradient_rate over 10**6 batch sizes (float64,
``np.linspace(4, 1e6, 10**6)``) this times one evaluation of the whole bundle by each route:

* ``lambdify``: ``sympy.lambdify(B, expr, "numpy")`` of each derived expression;
* ``numpy``: the generated numpy module, one function per quantity;
* ``C per quantity``: the generated C kernels, one per quantity (``module.q_star(B)``, ...);
* ``fused, all(B)``: the generated fused C kernel through the loader, ``module.all(B)``
  (one pass over B, the outputs allocated as one block);
* ``fused, out=``: the same into preallocated outputs, ``module.all(B, out=...)``;
* ``hand, alloc`` and ``hand, out=``: a fused C loop written by hand below (the formulas
  simplified in J and J'), compiled by the same compiler with the same flags, called through
  cffi like the two fused routes (a fresh block of outputs / preallocated outputs).

The routes run interleaved (one call of each in turn, ``--rounds`` times, after a warm-up
round) and each is reported by its median (its minimum is listed too), so a change of machine load
hits every route alike. Then the memory bound: ``np.copyto`` of arrays 4x larger than the
last-level cache gives the bandwidth, and the fused kernel must move 48 bytes per batch size
(8 read, 5 x 8 written).

Run:  python benchmarks/bench_codegen.py [--n 1000000] [--rounds 21]
(set BNMFT_CACHE_DIR to keep the compiled kernels out of ~/.cache).
"""

from __future__ import annotations

import argparse
import os
import time

import cffi
import numpy as np
import sympy as sp

from bnmft import __version__
from bnmft.codegen import generate, jit, load_c, load_numpy
from bnmft.derive.activation import activation
from bnmft.derive.derivation import derive
from bnmft.derive.symbols import B

BUNDLE = ("q_star", "c_star", "lambda_L", "lambda_M", "gradient_rate")
#: Bytes the fused kernel must move per batch size: B[i] read, one double written per output.
BYTES_PER_B = 8 * (1 + len(BUNDLE))

_HAND_PROTOTYPE = (
    "void relu_hand_all(size_t n, const double *B, double *q_star, double *c_star, "
    "double *lambda_L, double *lambda_M, double *gradient_rate);"
)
#: The relu bundle by hand. With c = -1/(B - 1) = -x, J' = (pi - acos c)/pi = acos(x)/pi,
#: J = (sqrt(1 - c^2) + c (pi - acos c))/pi = x (sqrt(B (B - 2)) - acos x)/pi, and
#: r = 1/((1 - J)(B + 1)): lambda_M = B J' r, lambda_L = (B - 2)(1 - J) r + x lambda_M,
#: gradient_rate = (B + J + J' - 2)/((1 - J)(B - 3)).
HAND_C = """\
#include <math.h>
#include <stddef.h>

#include "relu_hand.h"

static const double inv_pi = 0.318309886183790671537767526745028724;

void relu_hand_all(size_t n, const double *B, double *q_star, double *c_star,
                   double *lambda_L, double *lambda_M, double *gradient_rate)
{
    for (size_t i = 0; i < n; ++i) {
        const double b = B[i];
        const double x = 1.0 / (b - 1.0);
        const double a = acos(x);
        const double jp = a * inv_pi;
        const double j = x * (sqrt(b * (b - 2.0)) - a) * inv_pi;
        const double omj = 1.0 - j;
        const double r = 1.0 / (omj * (b + 1.0));
        const double m = b * jp * r;
        q_star[i] = 0.5;
        c_star[i] = j;
        lambda_M[i] = m;
        lambda_L[i] = (b - 2.0) * omj * r + x * m;
        gradient_rate[i] = (b + j + jp - 2.0) / (omj * (b - 3.0));
    }
}
"""


def load_hand():
    """The hand-written loop, built by the JIT cache (same compiler, CFLAGS and -lm)."""
    path = jit.build_c({"relu_hand.c": HAND_C, "relu_hand.h": _HAND_PROTOTYPE + "\n"}, "relu_hand")
    ffi = cffi.FFI()
    ffi.cdef(_HAND_PROTOTYPE)
    return ffi, ffi.dlopen(str(path))


def hand_routes(ffi, kernel, x: np.ndarray, outs: dict[str, np.ndarray]):
    """Two calls of ``kernel(n, B, *outputs)``: into a fresh block of outputs (as
    ``module.all(B)`` allocates them), and into the preallocated ``outs``."""
    b = ffi.from_buffer("double[]", x)
    preallocated = [ffi.from_buffer("double[]", outs[q]) for q in BUNDLE]

    def alloc():
        block = np.empty((len(BUNDLE), x.size))
        kernel(x.size, b, *(ffi.from_buffer("double[]", row) for row in block))
        return dict(zip(BUNDLE, block))

    def out():
        kernel(x.size, b, *preallocated)
        return outs

    return alloc, out


def interleaved(routes: dict, rounds: int) -> dict[str, np.ndarray]:
    """Wall times of each route, one call of every route per round (after a warm-up round)."""
    for run in routes.values():
        run()
    times = {name: [] for name in routes}
    for _ in range(rounds):
        for name, run in routes.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: np.array(t) for name, t in times.items()}


def last_level_cache() -> int:
    """Bytes of the largest CPU cache (sysconf; 32 MiB if the system does not say)."""
    sizes = []
    for level in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            sizes.append(os.sysconf(level))
        except (ValueError, OSError):
            pass
    return max([s for s in sizes if s > 0] or [32 * 2**20])


def copy_bandwidth(rounds: int) -> tuple[float, int]:
    """Bytes/s of ``np.copyto`` (8 read + 8 written per float64) on arrays 4x the last-level
    cache (median of ``rounds``), and the array size in bytes."""
    n = 4 * last_level_cache() // 8
    src, dst = np.linspace(0.0, 1.0, n), np.empty(n)
    np.copyto(dst, src)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return 16 * n / float(np.median(times)), 8 * n


def max_rel_diff(got: dict, ref: dict) -> float:
    """Largest relative difference over the bundle (absolute where the reference is 0)."""
    worst = 0.0
    for q in BUNDLE:
        r = np.broadcast_to(ref[q], np.shape(got[q]))
        scale = np.where(r == 0, 1.0, np.abs(r))
        worst = max(worst, float(np.max(np.abs(got[q] - r) / scale)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10**6, help="number of batch sizes")
    parser.add_argument("--rounds", type=int, default=21, help="interleaved timed rounds")
    args = parser.parse_args()

    closed = derive(activation("relu")).closed
    quantities = [closed[name] for name in BUNDLE]
    c_src = generate(quantities, lang="c", module="relu_bench", activation_name="relu")
    np_src = generate(quantities, lang="numpy", module="relu_bench", activation_name="relu")
    t0 = time.perf_counter()
    c_mod = load_c(c_src, "relu_bench")  # compiles on the first run, then reuses the cache
    ffi_hand, hand = load_hand()
    t_load = time.perf_counter() - t0
    np_mod = load_numpy(np_src, "relu_bench")
    lambdified = {q.name: sp.lambdify(B, q.expr, "numpy") for q in quantities}

    x = np.linspace(4.0, 1e6, args.n)
    fused_outs = {q: np.empty_like(x) for q in BUNDLE}
    hand_outs = {q: np.empty_like(x) for q in BUNDLE}

    hand_alloc, hand_out = hand_routes(ffi_hand, hand.relu_hand_all, x, hand_outs)
    routes = {
        "lambdify": lambda: {q: lambdified[q](x) for q in BUNDLE},
        "numpy": lambda: {q: getattr(np_mod, q)(x) for q in BUNDLE},
        "C per quantity": lambda: {q: getattr(c_mod, q)(x) for q in BUNDLE},
        "fused, all(B)": lambda: c_mod.all(x),
        "fused, out=": lambda: c_mod.all(x, out=fused_outs),
        "hand, alloc": hand_alloc,
        "hand, out=": hand_out,
    }
    times = interleaved(routes, args.rounds)
    results = {name: run() for name, run in routes.items()}

    compiler = jit._compiler_version(tuple(jit.find_compiler()))
    print(f"bnmft {__version__}, numpy {np.__version__}, sympy {sp.__version__}; {compiler}")
    print(f"C flags: {' '.join(jit.CFLAGS + jit.LDLIBS)}")
    print(f"n = {args.n} float64 batch sizes in [4, 1e6]; {', '.join(BUNDLE)}")
    print(f"{args.rounds} interleaved rounds (after one warm-up), medians")
    print(f"C load (compile or cache hit) {t_load * 1e3:.1f} ms, excluded from timings\n")

    med = {name: float(np.median(t)) for name, t in times.items()}
    ns = {name: 1e9 * m / args.n for name, m in med.items()}
    low = {name: float(np.min(t)) for name, t in times.items()}
    header = (
        f"{'route':<16}{'ms':>9}{'ns/B':>8}{'IQR ns/B':>10}{'min ns/B':>10}{'lambdify/route':>16}"
        f"{'max rel diff':>14}"
    )
    print(header)
    print("-" * len(header))
    for name in routes:
        q1, q3 = np.percentile(times[name], [25, 75]) * 1e9 / args.n
        diff = max_rel_diff(results[name], results["lambdify"])
        print(
            f"{name:<16}{med[name] * 1e3:>9.2f}{ns[name]:>8.1f}{q3 - q1:>10.1f}"
            f"{low[name] * 1e9 / args.n:>10.1f}{med['lambdify'] / med[name]:>15.1f}x{diff:>14.1e}"
        )
    print("-" * len(header))
    print("max rel diff: against lambdify over the bundle (lambdify returns a bare 0.5 for")
    print("q_star, filling no array, which only favours it).\n")

    fused_vs_hand = med["fused, out="] / med["hand, out="]
    alloc_vs_hand = med["fused, all(B)"] / med["hand, alloc"]
    speedup = med["lambdify"] / med["fused, all(B)"]
    verdict = {True: "met", False: "NOT met"}
    print(
        f"fused / hand-fused:  {fused_vs_hand:.2f}x into preallocated outputs, "
        f"{alloc_vs_hand:.2f}x allocating them (goal <= 1.3x: {verdict[fused_vs_hand <= 1.3]}, "
        f"{verdict[alloc_vs_hand <= 1.3]})"
    )
    print(
        f"lambdify / fused:    {speedup:.1f}x with all(B), "
        f"{med['lambdify'] / med['fused, out=']:.1f}x with out= (goal >= 8x: "
        f"{verdict[speedup >= 8]} with all(B))"
    )
    print(f"C per quantity / fused, all(B): {med['C per quantity'] / med['fused, all(B)']:.1f}x")

    bw, nbytes = copy_bandwidth(args.rounds)
    bound_ns = BYTES_PER_B / bw * 1e9
    fused_ns = ns["fused, out="]
    moved = BYTES_PER_B / fused_ns  # GB/s
    kind = "memory-bound" if moved > 0.5 * bw / 1e9 else "compute-bound (acos, sqrt, divisions)"
    print(
        f"\nmemory: np.copyto of {nbytes / 2**20:.0f} MiB arrays (4x the last-level cache): "
        f"{bw / 1e9:.1f} GB/s (8 B read + 8 B written per element)."
    )
    print(
        f"The fused kernel must move {BYTES_PER_B} B per batch size (1 input + {len(BUNDLE)} "
        f"outputs): {bound_ns:.2f} ns/B at that bandwidth."
    )
    print(
        f"Into preallocated outputs it takes {fused_ns:.1f} ns/B = {moved:.2f} GB/s, "
        f"{100e9 * moved / bw:.0f}% of the copy bandwidth,"
    )
    print(f"{fused_ns / bound_ns:.1f}x the memory bound: {kind}.")


if __name__ == "__main__":
    main()
