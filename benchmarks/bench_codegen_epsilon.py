"""Benchmark the eps > 0 functions of generated modules (``bnmft codegen ACT --epsilon``):
CPU time per (B, eps, sigma_w) element of ``all_eps`` (numpy) and ``MODULE_all_eps`` (C), for
relu (closed sphere moments, scaled in rho) and tanh (Chebyshev tables of the module's
sphere rule), against ``bnmft.numerics.epsilon.analyze_regularised`` (its float64 route for
both: the same algorithm in the library), interleaved, best of ``--rounds``. ``--families``:
also the family modules (``bnmft codegen leaky_relu --epsilon``, ``alpha_relu``; slope /
alpha an array argument, here 0.2 / 1.5 at every element) and, for comparison, the fixed
module of alpha_relu:1.5.

The grid: B in {4, 64, 1000, 10^6} times 25 eps in [1e-4, 0.1] (sigma_w = 1); the numpy
module builds a tanh table once per distinct B, the C kernels once per run of equal B in a
thread's range of elements (here: once per B). The blocks
are rendered unverified (the generation-time verification is not timed here).

Run:  python benchmarks/bench_codegen_epsilon.py [--rounds 3]
(set BNMFT_CACHE_DIR to keep the compiled kernels out of ~/.cache).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import bnmft
from bnmft.codegen import epsilon as E
from bnmft.codegen import generate, load_numpy
from bnmft.codegen import quadrature as Q
from bnmft.derive.activation import activation
from bnmft.derive.epsilon import derive_regularised
from bnmft.numerics import epsilon as N

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "quadrature"
FAMILY_GOLDEN = GOLDEN.parent
#: family -> (parameter, the value at every element, the fixed member's spec)
FAMILIES = {"leaky_relu": ("slope", 0.2, "leaky_relu:0.2"),
            "alpha_relu": ("alpha", 1.5, "alpha_relu:1.5")}


def _family_modules(name):
    """The golden family module (``bnmft codegen NAME``) with the eps > 0 block."""
    from bnmft.derive.activation import symbolic_activation

    act = symbolic_activation(name)
    forms = E.epsilon_forms(act, "scaled")
    mod = f"{name}_family"
    folder = FAMILY_GOLDEN / mod
    py = load_numpy(E.append_block((folder / f"{mod}.py").read_text(),
                                   E.render_numpy(act, forms), "bench"))
    c_block, h_block = E.render_c(act, forms, mod)
    c_all, _ = E.load_c_epsilon({f"{mod}.c": (folder / f"{mod}.c").read_text() + c_block,
                                 f"{mod}.h": E.insert_header((folder / f"{mod}.h").read_text(),
                                                             h_block, "bench")},
                                mod, (FAMILIES[name][0],))
    return py, c_all


def _modules(name):
    act = activation(name)
    if name in ("relu", "alpha_relu:1.5"):
        deriv = bnmft.derivation(name)
        forms = E.epsilon_forms(act, "scaled")
        py_base = generate(deriv, lang="numpy", module="be")["be.py"]
        c_base = generate(deriv, lang="c", module="bec")
    else:
        gold = load_numpy((GOLDEN / "tanh_q.py").read_text(), "tanh_q")
        plan = Q.QuadraturePlan(gold._PANEL_Z, dict(gold.VERIFIED),
                                tuple(gold.VERIFIED_BATCH_SIZES))
        forms = E.epsilon_forms(act, "table")
        py_base = Q._render_numpy(act, "be", plan)
        c_base = Q._render_c(act, "bec", plan)
    py = load_numpy(E.append_block(py_base, E.render_numpy(act, forms), "bench"))
    c_block, h_block = E.render_c(act, forms, "bec")
    c_all, _ = E.load_c_epsilon({"bec.c": c_base["bec.c"] + c_block,
                                 "bec.h": E.insert_header(c_base["bec.h"], h_block, "bench")},
                                "bec")
    return act, py, c_all


def _library(act, B, eps):
    rd = derive_regularised(act)
    N._float_model.cache_clear()  # its tables per B, as the numpy module builds them per call
    return [N._float_numbers(rd, int(b), float(e), 1.0, 15) for b, e in zip(B, eps)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--families", action="store_true")
    ap.add_argument("--only-families", action="store_true")
    ap.add_argument("--median", action="store_true", help="median of the rounds, not best")
    ap.add_argument("--no-library", action="store_true",
                    help="leave out the library's float64 route (minutes per round)")
    args = ap.parse_args()
    B = np.repeat([4.0, 64.0, 1e3, 1e6], 25)
    eps = np.tile(np.geomspace(1e-4, 0.1, 25), 4)
    names = [] if args.only_families else ["relu", "tanh"]
    if args.families or args.only_families:
        names += ["alpha_relu:1.5", "leaky_relu family", "alpha_relu family"]
    for name in names:
        if name.endswith(" family"):
            family = name.split()[0]
            _, value, fixed = FAMILIES[family]
            act = activation(fixed)
            fpy, fc = _family_modules(family)

            class _Bound:  # the family module at one parameter value, as a fixed one
                all_eps = staticmethod(lambda B_, e, w, fpy=fpy, v=value: fpy.all_eps(
                    B_, v, e, w))

            py = _Bound()
            c_all = (lambda B_, e, w, fc=fc, v=value: fc(B_, np.full(np.shape(B_), v), e, w))
        else:
            act, py, c_all = _modules(name)
        routes = {"numpy": lambda: py.all_eps(B, eps, 1.0), "C": lambda: c_all(B, eps, 1.0)}
        if not args.no_library:
            routes["library float64"] = lambda: _library(act, B, eps)
        times = {k: [] for k in routes}
        for _ in range(args.rounds):
            for k, f in routes.items():
                t = time.process_time()
                f()
                times[k].append(time.process_time() - t)
        best = {k: (min(v) if not args.median else float(np.median(v)))
                for k, v in times.items()}
        per = {k: 1e3 * v / B.size for k, v in best.items()}
        diff = max(float(np.max(np.abs(c_all(B, eps, 1.0)[q] - py.all_eps(B, eps, 1.0)[q])
                             / np.abs(py.all_eps(B, eps, 1.0)[q]))) for q in E.QUANTITIES)
        how = "median" if args.median else "best"
        print(f"{name}: CPU ms per element ({how} of {args.rounds}): "
              + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
              + (f"; library/numpy {per['library float64'] / per['numpy']:.1f}x"
                 if "library float64" in per else "")
              + f"; largest C - numpy relative difference {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
