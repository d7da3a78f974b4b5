"""Certified enclosures of the BSB1 quantities (eps = 0) by two routes in ball arithmetic.

For each quantity and batch size two balls (python-flint ``arb``), each containing the exact
value, by different routes; they must overlap, and each certifies the significant digits
its radius guarantees (:func:`certified_digits`).

* ``closed form``: the :class:`~bnmft.derive.Derivation`'s SymPy expression evaluated by
  :class:`~bnmft.numerics.arbprinter.ArbPrinter` (``acos``, ``sqrt``, ``gamma``, ``2F1``
  as Arb functions) -- positive-homogeneous phi (relu, leaky_relu, alpha_relu, ...);
* ``sphere integrals`` (:mod:`.rigorous_moments`): the sphere moments by ``acb.integral``
  (t-angle and polar forms), combined through the derivation's moment forms (paper Thm 4
  for ``q*``, ``c*``; the forward Jacobian's Rayleigh quotients and trace for ``lambda_G``,
  ``lambda_L``, ``lambda_M``; the backward map, paper Thm 7, for the rate);
* ``Thm 4 angles`` (smooth phi without closed forms: tanh, erf): the same moment forms over
  moments integrated in other variables (the ``x`` form and the hyperspherical angles of
  paper Thm 4), normalised by the quadrature of their own weights.

``lambda_G`` is identically 0 in the moment form (batchnorm removes the scale), so both
routes give the exact ball 0. ``depth_scale`` and ``max_trainable_depth`` follow from the
rate's ball through their relations (``1/log``, ``16/log``) on each route.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass

import mpmath
import sympy as sp
from flint import arb, ctx

from bnmft.derive import Activation, Derivation, InvalidInput, check_defined
from bnmft.derive.bsb1 import RELATIONS
from bnmft.derive.symbols import B as B_SYMBOL

from . import rigorous_moments
from .arbprinter import NotEvaluable, evaluate
from .precision import _exact_decimal, decimal_string

#: Quantities enclosed, in the order of the derivation.
QUANTITIES = ("q_star", "c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate",
              "depth_scale", "max_trainable_depth")
#: Digits a certified value is shown with at most (and ``certified_digits`` looks for).
MAX_SHOWN = 200
#: Raises of the working precision before a route is declared short of the digits.
RETRIES = 3

#: Largest batch sizes: nested 2-D rigorous quadrature (smooth phi) and separated 1-D
#: integrals (positive-homogeneous phi); both costs grow with the peak of cos^(B-4).
MAX_B_SMOOTH = 1000
MAX_B_HOMOGENEOUS = 10**9

ROUTE_CLOSED = "closed form (Arb)"
ROUTE_POLAR = "sphere integrals (acb.integral, polar)"
ROUTE_ANGLES = "sphere integrals (acb.integral, Thm 4 angles)"

#: What each route computes (printed under the table).
ROUTE_NOTES = {
    ROUTE_CLOSED: "the derivation's closed form evaluated in ball arithmetic (acos, sqrt, "
                  "gamma, 2F1 by Arb)",
    ROUTE_POLAR: "sphere moments by acb.integral (t angle; polar theta, psi), split at the "
                 "kinks, combined through the moment forms",
    ROUTE_ANGLES: "sphere moments by acb.integral in other variables (x form; Thm 4 angles "
                  "t1, t2), each normalised by its own weight's integral",
}


class RigorousInputError(InvalidInput):
    """An activation or option the rigorous verification cannot honour (one line)."""


@dataclass(frozen=True)
class Enclosure:
    """A ball ``[lower, upper]`` that contains the exact value, by one route."""

    ball: arb
    route: str

    @property
    def digits(self) -> float:
        return certified_digits(self.ball)

    @property
    def finite(self) -> bool:
        return self.ball.is_finite()

    def lower(self) -> mpmath.mpf:
        return _endpoints(self.ball)[0]

    def upper(self) -> mpmath.mpf:
        return _endpoints(self.ball)[1]

    def text(self, digits: int) -> tuple[str, str]:
        """``(value, radius)``: the value correctly rounded to ``digits`` (at most the
        certified ones) and a radius, rounded up to two digits, such that ``value +- radius``
        contains the ball (so it contains the exact value)."""
        if not self.finite:
            return "none", "inf"
        if self.ball.rad() == 0 and self.ball.mid() == 0:
            return "0", "0"
        # no certified digit: three digits of the midpoint, the radius still covering the ball
        shown = max(int(min(digits, self.digits, MAX_SHOWN)), 0) or 3
        value = decimal_string(_to_mpf(self.ball.mid()), shown)
        return value, _radius_text(self, decimal.Decimal(value))


def _radius_text(enc: Enclosure, centre: decimal.Decimal) -> str:
    """The smallest two-digit ``r`` (rounded up) with ``[lower, upper]`` inside
    ``centre +- r`` (exact decimal arithmetic)."""
    lo, hi = _exact_decimal(enc.lower()), _exact_decimal(enc.upper())
    r = max(hi - centre, centre - lo)
    if r == 0:
        return "0"
    ctx2 = decimal.Context(prec=2, rounding=decimal.ROUND_CEILING)
    return f"{ctx2.plus(r):.1e}"


def _to_mpf(value: arb) -> mpmath.mpf:
    """The midpoint of a ball, exactly."""
    man, exp = value.mid().man_exp()
    with mpmath.workprec(max(53, int(man).bit_length() + 8)):  # mpf() rounds to the context
        return mpmath.mpf((int(man), int(exp)))


def _endpoints(ball: arb) -> tuple[mpmath.mpf, mpmath.mpf]:
    """``(mid - rad, mid + rad)`` exactly (``arb.lower()`` would round to flint's
    current precision)."""
    mid, rad = _to_mpf(ball), _to_mpf(ball.rad())
    return mpmath.fsub(mid, rad, exact=True), mpmath.fadd(mid, rad, exact=True)


def certified_digits(ball: arb) -> float:
    """Significant digits the ball guarantees: the largest ``d`` such that every number in
    the ball has the same correct rounding to ``d`` significant digits (so the printed
    ``d``-digit value is the correctly rounded exact value); ``inf`` for an exact ball, 0 if
    the ball is not finite or contains 0 (with a nonzero radius)."""
    if not ball.is_finite():
        return 0
    if ball.rad() == 0:
        return math.inf
    lo, hi = _endpoints(ball)
    if lo <= 0 <= hi:
        return 0
    rel = (hi - lo) / min(abs(lo), abs(hi))
    start = max(1, min(MAX_SHOWN, int(-mpmath.log10(rel)) + 2))
    for d in range(start, 0, -1):
        if decimal_string(lo, d) == decimal_string(hi, d):
            return d
    return 0


@dataclass(frozen=True)
class RigorousCheck:
    """Two certified enclosures of one quantity at one batch size."""

    quantity: str
    batch_size: int
    digits_requested: int
    first: Enclosure
    second: Enclosure

    @property
    def overlap(self) -> bool:
        return bool(self.first.ball.overlaps(self.second.ball))

    @property
    def failures(self) -> list[str]:
        out = []
        if not self.overlap:
            out.append(f"the enclosures do not overlap ({self.first.route} vs "
                       f"{self.second.route})")
        for enc in (self.first, self.second):
            if enc.digits < self.digits_requested:
                out.append(f"{enc.route} certifies {enc.digits} of "
                           f"{self.digits_requested} digits")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        routes = []
        for enc in (self.first, self.second):
            value, radius = enc.text(self.digits_requested)
            d = enc.digits
            finite = enc.finite
            routes.append({
                "route": enc.route, "value": value if finite else None,
                "radius": radius if finite else None,
                "lower": _outward(enc.lower(), self.digits_requested + 5, down=True)
                if finite else None,
                "upper": _outward(enc.upper(), self.digits_requested + 5, down=False)
                if finite else None,
                "certified_digits": "exact" if d == math.inf else int(d),
            })
        return {"quantity": self.quantity, "batch_size": self.batch_size,
                "digits_requested": self.digits_requested, "overlap": self.overlap,
                "ok": self.ok, "failures": self.failures, "routes": routes}


def _outward(value: mpmath.mpf, digits: int, down: bool) -> str:
    """``value`` rounded to ``digits`` significant digits away from the ball's inside."""
    exact = _exact_decimal(value)
    if exact == 0:
        return "0"
    rounding = decimal.ROUND_FLOOR if down else decimal.ROUND_CEILING
    return str(decimal.Context(prec=digits, rounding=rounding).plus(exact))


# -- the two routes ---------------------------------------------------------------------------


def supported(act: Activation) -> None:
    """Raise :class:`RigorousInputError` unless both routes exist for ``act``."""
    if act.derivative_has_delta:
        raise RigorousInputError(f"--rigorous: phi' of {act.name} has a Dirac mass (the rate "
                                 f"is infinite); nothing to enclose")
    free = act.expr.free_symbols - {sp.Symbol("x", real=True)}
    if any(s.name != "x" for s in free):
        raise RigorousInputError(f"--rigorous needs numeric parameters ({act.name} has "
                                 f"{', '.join(sorted(s.name for s in free))})")
    if act.homogeneous is None and act.kinks:
        raise RigorousInputError(
            f"--rigorous supports positive-homogeneous phi (kinks at 0) and phi without "
            f"kinks; {act.name} has kinks at {', '.join(map(str, act.kinks))}")


def check_limits(act: Activation, sizes) -> None:
    """Refuse what cannot be done in a reasonable time (:data:`MAX_B_SMOOTH`,
    :data:`MAX_B_HOMOGENEOUS`) or at all (:func:`supported`)."""
    supported(act)
    limit = MAX_B_HOMOGENEOUS if act.homogeneous is not None else MAX_B_SMOOTH
    big = [b for b in sizes if b > limit]
    if big:
        kind = "positive-homogeneous" if act.homogeneous is not None else "smooth"
        raise RigorousInputError(
            f"--rigorous takes batch sizes up to {limit:,} for a {kind} phi (got {big[0]:,}): "
            f"the rigorous quadrature's cost grows with B")


def _closed_values(deriv: Derivation, B: int, bits: int) -> dict:
    old = ctx.prec
    ctx.prec = bits
    try:
        out = {}
        for name in QUANTITIES:
            q = deriv[name]
            if q.expr is None:
                raise RigorousInputError(f"--rigorous: {name} of {deriv.activation.name} has "
                                         f"no closed form")
            try:
                out[name] = evaluate(q.expr, {B_SYMBOL: B})
            except NotEvaluable as err:
                raise RigorousInputError(f"--rigorous: the closed form of {name}: {err}") \
                    from None
        return out
    finally:
        ctx.prec = old


def _moment_values(deriv: Derivation, B: int, bits: int, route: str) -> dict:
    moments = rigorous_moments.sphere_moments(deriv.activation, deriv.moments, B, bits, route)
    old = ctx.prec
    ctx.prec = bits + 20
    try:
        values = {mo.symbol: val for mo, val in moments.items()}
        values[B_SYMBOL] = arb(B)
        out = {}
        for name in QUANTITIES:
            if name in RELATIONS:
                continue
            out[name] = evaluate(deriv[name].moment_form, values)
        # xi = 1/log(rate) and 16 xi from the rate's ball (bsb1.RELATIONS)
        for name in ("depth_scale", "max_trainable_depth"):
            rel = RELATIONS[name]
            out[name] = evaluate(rel, {sym: out[str(sym)] for sym in rel.free_symbols})
        return out
    finally:
        ctx.prec = old


def _bits(digits: int, B: int) -> int:
    """Working precision for ``digits``: the digits, guard digits for the cancellation in
    the moment forms at large ``B`` (terms of size ``B`` that cancel), a margin."""
    return math.ceil((digits + 2 + math.log10(B)) * math.log2(10)) + 4


def _with_retries(compute, digits: int, B: int) -> dict:
    """``compute(bits)`` at rising precision until every ball certifies ``digits``."""
    bits = _bits(digits, B)
    for attempt in range(RETRIES + 1):
        values = compute(bits)
        short = [certified_digits(v) for v in values.values()]
        worst = min(short)
        if worst >= digits or attempt == RETRIES:
            return values
        bits += math.ceil((digits - worst + 6) * math.log2(10))
    return values


def enclosures(deriv: Derivation, B: int, digits: int) -> list[RigorousCheck]:
    """The :class:`RigorousCheck` of every quantity at batch size ``B`` (eps = 0)."""
    act = deriv.activation
    supported(act)
    if deriv.all_closed:
        first = _with_retries(lambda bits: _closed_values(deriv, B, bits), digits, B)
        second = _with_retries(lambda bits: _moment_values(deriv, B, bits, "polar"),
                               digits, B)
        routes = (ROUTE_CLOSED, ROUTE_POLAR)
    elif act.homogeneous is None:
        first = _with_retries(lambda bits: _moment_values(deriv, B, bits, "polar"), digits, B)
        second = _with_retries(lambda bits: _moment_values(deriv, B, bits, "angles"),
                               digits, B)
        routes = (ROUTE_POLAR, ROUTE_ANGLES)
    else:
        raise RigorousInputError(f"--rigorous: {act.name} is positive-homogeneous but some "
                                 f"quantity has no closed form")
    return [RigorousCheck(name, B, digits, Enclosure(first[name], routes[0]),
                          Enclosure(second[name], routes[1])) for name in QUANTITIES]


def verify_rigorous(deriv: Derivation, batch_sizes, digits: int, progress=None) -> list:
    """Every quantity at every batch size: a list of :class:`RigorousCheck`."""
    check_defined(deriv.activation, batch_sizes)
    out = []
    for B in batch_sizes:
        out.extend(enclosures(deriv, int(B), int(digits)))
        if progress is not None:
            progress()
    return out
