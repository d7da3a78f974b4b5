"""Tuning a hyperparameter to a target trainable depth: bracketing root finding on the theory.

The predicted maximum trainable depth is ``16 xi``, ``xi = 1 / log lambda_max`` (THEORY.md,
depth scale; paper Sec 3.4 and Fig 4), so ``16 xi = L`` is ``log lambda_max(v) = 16 / L``
for the varied parameter ``v`` (``gamma`` or ``beta`` of ``phi(gamma x + beta)``, or
batchnorm's ``eps``). The root of ``F(v) = log lambda_max(v) - log R`` (``R = exp(16/L)``, or
a target rate given directly) is bracketed by a scan over a fixed grid of the parameter's
range (sign change of ``F`` between neighbours; values without a nonzero fixed point count as
outside the range) and polished with :func:`scipy.optimize.brentq`.

Digits of the root: ``lambda_max`` carries ``d`` digits (its :class:`Number`), so ``F`` is
known to ``|dF| = 10^-d`` (a relative error of the rate is an absolute error of its log), and
the root to ``|dv| = |dF| / |F'(v)|`` (first order; ``F'`` by a central difference at the
root, checked against the bracket's secant); ``brentq``'s own tolerance is added. The value
is reported to ``-log10(|dv| / |v|)`` significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from bnmft.derive import InvalidInput

from .precision import Number

#: The parameter ranges the bracket scan covers (eps: times sigma_w^2), and their grids.
RANGES = {
    # tanh(gamma x) beyond gamma ~ 10 is too steep for the float64 quadratures (minutes, then
    # no digits); the rate there is far above any trainable target anyway
    "gamma": ("log", 1e-3, 10.0, 25),
    "beta": ("lin", -4.0, 4.0, 33),
    "eps": ("log", 1e-6, 1e2, 17),
}


#: Digits a rate must have to take part in the bracket scan and the root polishing.
MIN_RATE_DIGITS = 6


class Unreachable(InvalidInput):
    """No value of the parameter in its range gives the target (one line; exit status 2)."""


@dataclass
class Tuned:
    """The parameter value at which the target is reached, with its digits."""

    parameter: str
    value: float
    digits: float
    target_rate: float
    rate_digits: float
    slope: float
    bracket: tuple
    evaluations: int
    notes: list = field(default_factory=list)
    #: set by ``bnmft.tune``: the batch size and the value as printed (to ``digits``)
    batch_size: int | None = None
    text: str | None = None


def grid(parameter: str, scale: float = 1.0) -> np.ndarray:
    kind, lo, hi, n = RANGES[parameter]
    if kind == "log":
        return np.geomspace(lo * scale, hi * scale, n)
    return np.linspace(lo, hi, n)


def find_value(rate: Callable[[float], Number | None], parameter: str, target_rate: float,
               scale: float = 1.0, describe: Callable[[float], str] | None = None) -> Tuned:
    """The root of ``log rate(v) = log target_rate`` over the grid of ``parameter``.

    ``rate(v)`` returns the gradient rate as a :class:`Number`, or None where it has no value
    (no nonzero fixed point). Raises :class:`Unreachable` with the range of the rate seen.
    """
    if not (target_rate > 1 and math.isfinite(target_rate)):
        raise InvalidInput(f"the target rate must be a finite number > 1 (got {target_rate})")
    log_target = math.log(target_rate)
    cache: dict[float, Number | None] = {}

    def num(v):
        if v not in cache:
            cache[v] = rate(float(v))
        return cache[v]

    def F(v):
        n = num(v)
        # a rate short of MIN_RATE_DIGITS counts as no value (as outside the range)
        if n is None or n.value is None or not n.digits >= MIN_RATE_DIGITS or not float(
                n.value) > 0:
            return math.nan
        return math.log(float(n.value)) - log_target

    xs = grid(parameter, scale)
    fs = [F(xs[0])]
    bracket = None
    for a, b in zip(xs, xs[1:]):  # lazily: stop at the first sign change
        fa, fb = fs[-1], F(b)
        fs.append(fb)
        if math.isfinite(fa) and math.isfinite(fb) and (fa == 0 or fa * fb < 0):
            bracket = (float(a), float(b))
            break
    if bracket is None:
        seen = [math.exp(f + log_target) for f in fs if math.isfinite(f)]
        where = f"{parameter} in [{xs[0]:.3g}, {xs[-1]:.3g}]"
        if not seen:
            raise Unreachable(f"no {parameter} in {where[len(parameter) + 4:]} has a fixed point "
                              "with a gradient rate")
        lo, hi = min(seen), max(seen)
        extra = describe(target_rate) if describe else ""
        extra = f"; {extra}" if extra else ""
        raise Unreachable(f"no {where} reaches the target: the gradient rate there ranges over "
                          f"[{lo:.6g}, {hi:.6g}] (16 xi over [{_depth(hi):.6g}, "
                          f"{_depth(lo):.6g}]), the target rate is {target_rate:.6g}{extra}")
    a, b = bracket
    xtol = 1e-14 * max(abs(a), abs(b))
    try:
        root = brentq(F, a, b, xtol=xtol, rtol=1e-15, maxiter=200)
    except (ValueError, RuntimeError) as err:  # a rate without digits inside the bracket
        raise ArithmeticError(f"root of 16 xi = L in {parameter} on [{a:.6g}, {b:.6g}] not "
                              f"found: {err}") from None
    if not math.isfinite(F(root)):
        raise ArithmeticError(f"the gradient rate at {parameter} = {root:.6g} has no digits")
    n = num(root)
    rate_digits = min(float(n.digits), 15.0)
    h = 1e-5 * max(abs(root), 1e-3 if parameter == "beta" else abs(root))
    slope = (F(root + h) - F(root - h)) / (2 * h)
    secant = (F(b) - F(a)) / (b - a)
    notes = []
    if not (math.isfinite(slope) and slope != 0):
        raise ArithmeticError(f"the slope of log lambda_max in {parameter} at the root is "
                              f"{slope} (no digits for the root)")
    if slope * secant <= 0:
        notes.append("the slope at the root and the bracket's secant disagree in sign")
    df = 10.0 ** (-rate_digits)
    dv = df / abs(slope) + xtol
    digits = -math.log10(dv / abs(root)) if root != 0 else 0.0
    return Tuned(parameter, float(root), min(digits, 15.0), target_rate, rate_digits, slope,
                 bracket, len(cache), notes)


def _depth(rate: float) -> float:
    return 16.0 / math.log(rate) if rate > 1 else math.inf


def target_from_depth(depth: float) -> float:
    """``R = exp(16 / L)``: the gradient rate at which ``16 xi = L``."""
    if not (math.isfinite(depth) and depth > 0):
        raise InvalidInput(f"the target depth must be a finite number > 0 (got {depth})")
    return math.exp(16.0 / depth)
