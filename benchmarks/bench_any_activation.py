"""Whole-process cost of `bnmft analyze 'tanh(x)'` over 1,024 batch sizes vs the naive route.

The naive route is what one writes without bnmft: scipy `quad` / `dblquad` of the paper's
Thm 4 integrals (q*, q* c*) and Thm 7 integral (gradient rate), one batch size at a time,
in logs so that it works at every B (the printed prefactor (B(B-2))^(2-B/2) overflows from
B ~ 156 on). It is timed on 16 of the batch sizes; bnmft is timed as one process over all
1,024 (`--digits 12 --json`), start-up included. The script prints both costs per batch
size, their ratio, and the largest relative disagreement on the 16 shared batch sizes.

Run: python benchmarks/bench_any_activation.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
from scipy import integrate

ACT = "tanh(x)"


def phi(z):
    return math.tanh(z)


def dphi(z):
    return 1.0 - math.tanh(z) ** 2


def naive(B: int) -> tuple[float, float, float]:
    """q*, c*, gradient rate from scipy quadrature of Thm 4 and Thm 7 (paper forms, in logs)."""
    sB = math.sqrt(B)

    def z1(t):
        return -math.sqrt((B - 1) / B) * math.cos(t)

    def z2(t1, t2):
        return (math.cos(t1) / sB - math.sqrt(B - 2) * math.sin(t1) * math.cos(t2)) / math.sqrt(
            B - 1
        )

    def logsin(t):
        s = math.sin(t)
        return math.log(s) if s > 0 else -math.inf

    # Thm 4: normalising integrals done numerically with the same weights (in logs)
    w1 = lambda t: math.exp((B - 3) * logsin(t))  # noqa: E731
    w2 = lambda t: math.exp((B - 4) * logsin(t))  # noqa: E731
    opts = dict(epsabs=0, epsrel=1e-10, limit=200, points=[math.pi / 2])
    n1 = integrate.quad(w1, 0, math.pi, **opts)[0]
    q = integrate.quad(lambda t: w1(t) * phi(sB * z1(t)) ** 2, 0, math.pi, **opts)[0] / n1
    n2 = integrate.quad(w2, 0, math.pi, **opts)[0]
    qc = integrate.dblquad(
        lambda t2, t1: w1(t1) * w2(t2) * phi(sB * z1(t1)) * phi(sB * z2(t1, t2)),
        0, math.pi, 0, math.pi, epsabs=0, epsrel=1e-10,
    )[0] / (n1 * n2)
    s = q - qc
    # Thm 7, with (B(B-2))^(2-B/2) Z^((B-5)/2) combined in logs
    logpref = (2 - B / 2) * math.log(B * (B - 2))

    def integrand(v, u):
        Z = B * (B - 2) - B * (u * u + v * v) + (u - v) ** 2
        if Z <= 0:
            return 0.0
        dens = math.exp(logpref + (B - 5) / 2 * math.log(Z))
        return ((B - 1 - u * u) * dphi(u) ** 2 + (1 + u * v) * dphi(u) * dphi(v)) * dens

    R = math.sqrt(B - 1)

    def chord(u):
        a, b, c = B - 1, 2 * u, (B - 1) * u * u - B * (B - 2)
        d = math.sqrt(max(b * b - 4 * a * c, 0.0))
        return (-b - d) / (2 * a), (-b + d) / (2 * a)

    val = integrate.dblquad(integrand, -R, R, lambda u: chord(u)[0], lambda u: chord(u)[1],
                            epsabs=0, epsrel=1e-10)[0]
    rate = val / (s * 2 * math.pi)
    return q, qc / q, rate


def main() -> None:
    import warnings

    # the naive route is run as people run it: quadpack's roundoff/subdivision warnings for
    # the sharply peaked large-B integrands are expected and silenced
    warnings.simplefilter("ignore", integrate.IntegrationWarning)
    sizes = [int(b) for b in np.unique(np.rint(np.linspace(8, 4096, 1024)))]
    assert len(sizes) == 1024
    sample = sizes[:: len(sizes) // 16][:16]

    t0 = time.perf_counter()
    ref = {B: naive(B) for B in sample}
    naive_per_b = (time.perf_counter() - t0) / len(sample)

    cmd = [sys.executable, "-m", "bnmft", "analyze", ACT, "--batch-size",
           ",".join(map(str, sizes)), "--digits", "12", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    whole = time.perf_counter() - t0
    rows = {r["batch_size"]: r for r in json.loads(proc.stdout)}
    bnmft_per_b = whole / len(sizes)

    worst = 0.0
    for B, (q, c, rate) in ref.items():
        r = rows[B]
        for ours, theirs in ((r["q_star"], q), (r["c_star"], c), (r["gradient_rate"], rate)):
            worst = max(worst, abs(float(ours) - theirs) / abs(theirs))

    print(f"activation {ACT}: 1,024 batch sizes 8..4096, 12 digits")
    naive_ms = naive_per_b * 1e3
    print(f"naive scipy quad/dblquad (Thm 4 + Thm 7), 16 sampled B: {naive_ms:8.2f} ms per B")
    print(f"bnmft analyze, one process over all 1,024 B:          {bnmft_per_b * 1e3:8.2f} ms per B"
          f"  ({whole:.2f} s in all)")
    print(f"ratio (naive / bnmft, per batch size): {naive_per_b / bnmft_per_b:.1f}x")
    print(f"largest relative difference on the 16 shared B: {worst:.1e}")

    from bnmft.derive.activation import activation
    from bnmft import analyze

    act = activation(ACT)
    analyze(act, sizes[:8], 12)  # warm caches (derivation, lambdified forms)
    t0 = time.perf_counter()
    analyze(act, sizes, 12)
    lib = time.perf_counter() - t0
    lib_ms = lib / len(sizes) * 1e3
    print(f"library use (warm, in-process analyze of all 1,024 B): {lib_ms:.3f} ms per B")


if __name__ == "__main__":
    main()
