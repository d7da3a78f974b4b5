"""Monte Carlo over the batch sphere: a third, loose route for every BSB1 quantity.

``z = sqrt(B) G g / |G g|`` with ``g ~ N(0, I_B)`` is exactly the BSB1 law of a batch after
batchnorm (THEORY.md, the sphere picture). Sphere moments are sample means over the
``B`` (one-point) or ``B(B-1)`` (two-point, all ordered pairs) coordinates of each sample;
their standard errors come from the spread over independent blocks of samples, and the
quantities' standard errors from the spread of the quantities over those blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnmft.derive.activation import Activation
from bnmft.derive.bsb1 import QUANTITIES
from bnmft.derive.derivation import derive
from bnmft.derive.numpyfn import numpy_function
from bnmft.derive.symbols import B as B_SYM


@dataclass
class Estimate:
    mean: float
    stderr: float


def sample_sphere(B: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` batches ``z`` (shape ``(n, B)``) uniform on the BSB1 sphere of radius ``sqrt(B)``."""
    g = rng.standard_normal((n, B))
    g -= g.mean(axis=1, keepdims=True)
    return np.sqrt(B) * g / np.linalg.norm(g, axis=1, keepdims=True)


def _point(pt, z, f, df):
    out = np.ones_like(z)
    if pt.m:
        out = out * z**pt.m
    if pt.p:
        out = out * f**pt.p
    if pt.q:
        out = out * df**pt.q
    return out


def _block_moments(act: Activation, moments, z: np.ndarray) -> list[float]:
    f = act.numpy(z)
    df = act.numpy_derivative(z) if any(p.q for mo in moments for p in mo.points) else None
    B = z.shape[1]
    out = []
    for mo in moments:
        if mo.arity == 1:
            out.append(float(_point(mo.points[0], z, f, df).mean()))
        else:
            a = _point(mo.points[0], z, f, df)
            b = _point(mo.points[1], z, f, df)
            # sum over ordered pairs i != j: (sum a)(sum b) - sum(a b)
            pair = a.sum(axis=1) * b.sum(axis=1) - (a * b).sum(axis=1)
            out.append(float(pair.mean() / (B * (B - 1))))
    return out


def monte_carlo(act: Activation, B: int, samples: int = 200_000, blocks: int = 20,
                seed: int = 0) -> dict[str, Estimate]:
    """Every BSB1 quantity by sampling the sphere, with a standard error from block spread."""
    deriv = derive(act)
    moments = list(deriv.moments)
    fns = {
        n: numpy_function([B_SYM, *[mo.symbol for mo in moments]], deriv.forms[n])
        for n in QUANTITIES
    }
    rng = np.random.default_rng(seed)
    per_block = max(samples // blocks, 1)
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(blocks):
            vals = _block_moments(act, moments, sample_sphere(B, per_block, rng))
            rows.append([float(fns[n](B, *vals)) for n in QUANTITIES])
    data = np.array(rows)
    mean = data.mean(axis=0)
    err = data.std(axis=0, ddof=1) / np.sqrt(blocks)
    return {n: Estimate(float(mean[i]), float(err[i])) for i, n in enumerate(QUANTITIES)}
