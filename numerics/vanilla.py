"""Vanilla networks: the fixed points ``q*``, ``c*``, the slopes ``chi_1``, ``chi_q``,
``chi_c`` and the depth scales ``xi_q``, ``xi_c``, each a :class:`Number` with the digits
achieved (THEORY.md, "Vanilla networks"; the maps come from
:func:`bnmft.derive.vanilla.derive_vanilla`).

Routes. Positive-homogeneous ``phi``: the closed maps (evaluated at two working precisions;
an affine length map has its fixed point in closed form, exact). Otherwise the Gaussian
moments by quadrature (:mod:`.gaussian_quadrature`): float64 up to
:data:`~.precision.FLOAT_DIGITS` digits, Arb beyond (after a float64 solve that brackets the
root).

Fixed points. ``q*`` is the limit of the length map iterated from ``q0`` (default 1): from
``q0`` the scan follows the sign of ``L(q) - q`` by factors of 2 to a sign change (a
bracket), or past ``1e30`` (no fixed point: ``q`` grows without bound), or below ``1e-30``
with ``L(0) = 0`` (the signal dies: ``q* = 0``). ``c* = 1`` when ``chi_1 <= 1`` (ordered
phase: ``R(c) - c`` is convex on ``[0, 1]`` with slope ``chi_1 - 1 <= 0`` at 1, so it stays
positive below 1); otherwise ``c*`` is the root of ``R(c) - c`` in ``[0, 1)`` (``R(0) >= 0``,
and ``R(c) < c`` just below 1), or exactly 0 for odd ``phi`` with ``sigma_b = 0``.

Convergence check. A root ``x`` is reported with ``delta`` (relative ``10^-(digits+2)``,
widened by tens if needed) only when ``F(x - delta)`` and ``F(x + delta)`` have opposite
signs and both exceed their error estimates: the root is then certified to lie within
``delta`` of ``x``, and its digits are those of ``delta``. Values at the fixed point carry
their quadrature error plus the fixed point's uncertainty times their slope (first order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import mpmath
import sympy as sp

from bnmft.derive import VANILLA_QUANTITIES as QUANTITIES
from bnmft.derive import VANILLA_RELATIONS as RELATIONS
from bnmft.derive import VANILLA_SYMBOLS, VanillaDerivation

from . import gaussian_quadrature as gq
from .evaluate import _exact_number, _propagate
from .precision import FLOAT_DIGITS, INF, Number, digits_from_error, shortfalls

Q_SYM, C_SYM, SIGMA_W2, SIGMA_B2 = VANILLA_SYMBOLS

#: The scan for a sign change of L(q) - q stops at these lengths.
Q_MAX = mpmath.mpf(10) ** 30
Q_MIN = mpmath.mpf(10) ** -30
#: Largest relative bracket half-width tried before a root is reported as not certified.
_WIDEST = mpmath.mpf(10) ** -2


@dataclass
class VanillaAnalysis:
    """Everything computed for one vanilla network.

    ``numbers``: :data:`~bnmft.derive.vanilla.QUANTITIES` as :class:`Number` objects;
    ``phase``: ``"ordered"`` (``chi_1 < 1``), ``"critical"`` (``chi_1 = 1``, exactly or
    within accuracy), ``"chaotic"`` (``chi_1 > 1``), None without a fixed point;
    ``fixed_point``: ``"attracting"``, ``"zero"`` (the signal dies), ``"identity"`` (the
    length map is the identity: ``q* = q0``) or ``"unbounded"`` (no fixed point);
    ``notes``: one line each, for the reader.
    """

    activation: object
    sigma_w: sp.Expr
    sigma_b: sp.Expr
    numbers: dict[str, Number] = field(default_factory=dict)
    phase: str | None = None
    fixed_point: str = "attracting"
    notes: list[str] = field(default_factory=list)

    def shortfalls(self, digits: int) -> list[str]:
        return shortfalls(self.numbers, digits)


# -- evaluating the maps ---------------------------------------------------------------------


@lru_cache(maxsize=128)
def _form_function(form, moments: tuple):
    args = [*VANILLA_SYMBOLS, *(mo.symbol for mo in moments)]
    return sp.lambdify(args, form.moment_form, "mpmath")


@lru_cache(maxsize=128)
def _closed_function(form):
    return sp.lambdify(list(VANILLA_SYMBOLS), form.expr, "mpmath")


class Maps:
    """The forms of a :class:`VanillaDerivation` at ``(q, c)`` with absolute error estimates,
    by one route: ``"closed"`` (homogeneous phi), ``"float"`` or ``"arb"`` (quadrature).
    Values are mpmath numbers at the working precision of the caller."""

    def __init__(self, vd: VanillaDerivation, sw2: sp.Expr, sb2: sp.Expr, route: str,
                 dps: int):
        self.vd, self.route, self.dps = vd, route, dps
        self._sw2, self._sb2 = sw2, sb2

    @property
    def label(self) -> str:
        return {"closed": "closed form", "float": "Gaussian quadrature (float64)",
                "arb": "Gaussian quadrature (Arb)"}[self.route]

    def _params(self):
        return mpmath.mpf(sp.N(self._sw2, mpmath.mp.dps + 5)), mpmath.mpf(
            sp.N(self._sb2, mpmath.mp.dps + 5))

    def __call__(self, name: str, q, c=None):
        """``(value, abs error)`` of form ``name`` at ``q`` (and ``c``)."""
        form = self.vd[name]
        if self.route == "closed":
            return self._closed(form, q, c)
        moments = tuple(form.moments)
        if self.route == "float":
            vals, errs = gq.moments_float(self.vd.activation, moments, float(q),
                                          None if c is None else float(c))
            vals = {mo: mpmath.mpf(v) for mo, v in vals.items()}
            errs = {mo: mpmath.mpf(e) for mo, e in errs.items()}
        else:
            res = gq.moments_arb(self.vd.activation, moments, q, c, self.dps)
            vals = {mo: v for mo, (v, e) in res.items()}
            errs = {mo: e for mo, (v, e) in res.items()}
        fn = _form_function(form, moments)
        sw2, sb2 = self._params()
        cc = mpmath.mpf(0) if c is None else mpmath.mpf(c)
        args = [vals[mo] for mo in moments]
        eargs = [errs[mo] for mo in moments]
        rel_step = mpmath.mpf(10) ** (-mpmath.mp.dps // 2)
        value, err = _propagate(lambda *a: fn(mpmath.mpf(q), cc, sw2, sb2, *a), args, eargs,
                                rel_step)
        if self.route == "float":
            err += abs(value) * mpmath.mpf(2) ** -50  # rounding of the float64 moments' form
        return value, err

    def _closed(self, form, q, c):
        fn = _closed_function(form)
        cc = mpmath.mpf(0) if c is None else c
        with mpmath.workdps(mpmath.mp.dps + 15):
            sw2, sb2 = self._params()
            v2 = fn(mpmath.mpf(q), mpmath.mpf(cc), sw2, sb2)
        with mpmath.workdps(mpmath.mp.dps):
            sw2, sb2 = self._params()
            v1 = fn(q, cc, sw2, sb2)
        v2 = mpmath.mpf(v2)
        return +v2, abs(v2 - v1) + abs(v2) * mpmath.mpf(10) ** (-mpmath.mp.dps)


# -- roots -----------------------------------------------------------------------------------


def _sign(value, err) -> int:
    """+1 / -1 if ``value`` is certainly positive / negative given ``err``, else 0."""
    if abs(value) <= err:
        return 0
    return 1 if value > 0 else -1


def _certify(F, x, rel, scale, upper=None):
    """Smallest ``delta = rel * scale * 10^k`` (k = 0, 1, ...) such that ``F`` has certified
    opposite signs at ``x -+ delta`` (and ``x + delta < upper``); None if none up to
    :data:`_WIDEST`."""
    delta = rel * scale
    while delta <= _WIDEST * scale:
        lo, hi = x - delta, x + delta
        if upper is not None and hi >= upper:
            return None
        s_lo, s_hi = _sign(*F(lo)), _sign(*F(hi))
        if s_lo and s_hi and s_lo != s_hi:
            return delta
        delta *= 10
    return None


def _solve(F_lo, F_hi, a, b, digits: int, upper=None):
    """Root of ``F`` in the bracket ``[a, b]``: ``mpmath.findroot`` (Anderson-Bjoerk, in the
    variable ``x / b`` so that its tolerance is relative) on the fast route ``F_lo``, then, if
    the precise route ``F_hi`` differs, Newton steps with the fast route's slope; finally
    :func:`_certify`. Returns ``(x, delta)`` (``delta`` None: not certified)."""
    cache: dict = {}
    scale = max(abs(a), abs(b))

    def f_lo(t):
        if t not in cache:
            cache[t] = F_lo(t * scale)[0]
        return cache[t]

    tol = mpmath.mpf(10) ** (-min(digits, FLOAT_DIGITS if F_hi is not F_lo else digits) - 4)
    t = mpmath.findroot(f_lo, (a / scale, b / scale), solver="anderson", verify=False,
                        tol=tol, maxsteps=80)
    x = min(max(t * scale, a), b)
    if F_hi is not F_lo:
        h = (b - a) * mpmath.mpf(10) ** -6
        slope = (F_lo(x + h)[0] - F_lo(x - h)[0]) / (2 * h)
        target = abs(x) * mpmath.mpf(10) ** (-digits - 3)
        for _ in range(8):
            value, err = F_hi(x)
            step = value / slope
            x -= step
            if abs(step) <= target or abs(value) <= err:
                break
    size = max(abs(x), mpmath.mpf(10) ** -digits)
    delta = _certify(F_hi, x, mpmath.mpf(10) ** (-digits - 2), size, upper)
    return x, delta


# -- the analysis ------------------------------------------------------------------------------


def _exact_sign(expr: sp.Expr) -> int:
    """Sign of an exact real SymPy number (0 only if it simplifies to 0)."""
    expr = sp.nsimplify(expr) if expr.is_Float else expr
    if expr.is_zero or sp.simplify(expr) == 0:
        return 0
    value = sp.N(expr, 60)
    return 1 if value > 0 else -1


def _is_exact(num: Number) -> bool:
    """The value came from an exact expression: exact (a binary fraction), or a rational
    rounded at its working precision (``0.7``; its claim is then finite, its formula exact)."""
    return num.digits == INF or num.note == "rational, rounded"


def _exact(expr: sp.Expr, digits: int, route: str) -> Number:
    expr = sp.simplify(expr) if not expr.is_Rational else expr
    return _exact_number(expr, digits, route)


def _number(value, err, route: str, note: str = "") -> Number:
    if value is None:
        return Number(None, 0.0, route, note)
    return Number(value, digits_from_error(value, err), route, note)


def _relation(name: str, chi: Number, digits: int) -> Number:
    """``xi = -1/log|chi|`` from ``chi`` (errors propagated; ``chi = 1`` exactly: infinite)."""
    route = chi.route
    if chi.value is None:
        return Number(None, 0.0, route, chi.note)
    rel = RELATIONS[name]
    (sym,) = rel.free_symbols
    if chi.digits == INF and chi.value == 1:
        return Number(mpmath.inf, INF, route, "exact")
    if chi.is_infinite:
        return Number(mpmath.mpf(0), INF, route, "chi is infinite")
    fn = sp.lambdify([sym], rel, "mpmath")
    with mpmath.workprec(max(128, getattr(chi.value, "_mpf_", (0, 0, 0, 53))[3] + 64)):
        v = mpmath.mpf(chi.value)
        err = 0 if chi.digits == INF else abs(v) * mpmath.mpf(10) ** -chi.digits
        if err and abs(abs(v) - 1) <= err:
            return Number(None, 0.0, route, f"chi = 1 within accuracy: {name} is not determined")
        value, e = _propagate(fn, [v], [err], mpmath.mpf(2) ** -60)
        value = mpmath.mpf(value.real) if isinstance(value, mpmath.mpc) else value
        digits_got = digits_from_error(value, e) if err else digits + 15
        return Number(+value, min(digits_got, chi.digits + 15 if chi.digits != INF else INF),
                      route)


def analyze_vanilla(vd: VanillaDerivation, sigma_w: sp.Expr, sigma_b: sp.Expr,
                    digits: int = 16, q0=1) -> VanillaAnalysis:
    """Fixed points, slopes and depth scales of the vanilla network ``(phi, sigma_w,
    sigma_b)``, each to ``digits`` significant digits or marked as short (see the module
    docstring for the routes and the convergence check)."""
    sw2, sb2 = sp.nsimplify(sigma_w) ** 2, sp.nsimplify(sigma_b) ** 2
    out = VanillaAnalysis(vd.activation, sigma_w, sigma_b)
    with mpmath.workdps(digits + 15):
        if vd.closed:
            lo = hi = Maps(vd, sw2, sb2, "closed", digits + 5)
        elif digits <= FLOAT_DIGITS:
            lo = hi = Maps(vd, sw2, sb2, "float", 16)
        else:
            lo = Maps(vd, sw2, sb2, "float", 16)
            hi = Maps(vd, sw2, sb2, "arb", digits + 5)
        _fixed_q(vd, sw2, sb2, lo, hi, digits, sp.nsimplify(q0), out)
        if out.fixed_point == "unbounded":
            for name in QUANTITIES:
                out.numbers.setdefault(name, Number(None, 0.0, hi.label, "no fixed point"))
            return out
        _slopes_at_q(vd, sw2, sb2, lo, hi, digits, out)
        _phase(out, digits)
        _fixed_c(vd, sw2, sb2, lo, hi, digits, out)
        for name, chi in (("xi_q", "chi_q"), ("xi_c", "chi_c")):
            out.numbers[name] = _relation(name, out.numbers[chi], digits)
    out.numbers = {name: out.numbers[name] for name in QUANTITIES}
    return out


def _substituted(vd, name, sw2, sb2, qv=None, cv=None) -> sp.Expr:
    expr = vd[name].expr.subs({SIGMA_W2: sw2, SIGMA_B2: sb2})
    if qv is not None:
        expr = expr.subs(Q_SYM, qv)
    if cv is not None:
        expr = expr.subs(C_SYM, cv)
    return expr


def _fixed_q(vd, sw2, sb2, lo: Maps, hi: Maps, digits, q0, out: VanillaAnalysis) -> None:
    """``q*`` into ``out.numbers['q_star']`` (exact where possible) and ``out.fixed_point``."""
    if vd.q_star is not None:  # affine closed length map a q + b
        length = vd["length_map"].expr.subs({SIGMA_W2: sw2, SIGMA_B2: sb2})
        a = sp.diff(length, Q_SYM)
        b = length.subs(Q_SYM, 0)
        s = _exact_sign(a - 1)
        route = "closed form (affine length map solved by SymPy)"
        if s < 0:
            value = sp.simplify(vd.q_star.subs({SIGMA_W2: sw2, SIGMA_B2: sb2}))
            out.numbers["q_star"] = _exact(value, digits, route)
            if value == 0:
                out.fixed_point = "zero"
                out.notes.append("the signal dies: q* = 0 (L(q) = a q with slope a < 1)")
            return
        if s == 0 and _exact_sign(b) == 0:
            out.fixed_point = "identity"
            out.numbers["q_star"] = _exact(q0, digits, route + "; identity map, q* = q0")
            out.notes.append("the length map is the identity: every q is a fixed point, "
                             f"q* = q0 = {q0}")
            return
        out.fixed_point = "unbounded"
        out.notes.append("no fixed point: q grows without bound (L(q) = a q + b with slope "
                         f"a = {sp.N(a, 6)} >= 1{'' if s > 0 else ' and b > 0'})")
        return
    _fixed_q_numeric(vd, sw2, sb2, lo, hi, digits, q0, out)


def _fixed_q_numeric(vd, sw2, sb2, lo, hi, digits, q0, out) -> None:
    def G(maps):
        def g(qv):
            v, e = maps("length_map", qv)
            return v / qv - 1, e / qv
        return g

    g_lo = G(lo)
    q = mpmath.mpf(sp.N(q0, mpmath.mp.dps))
    s0 = _sign(*g_lo(q))
    if s0 == 0:  # q0 is a fixed point within accuracy: look at both neighbours
        s_up, s_dn = _sign(*g_lo(2 * q)), _sign(*g_lo(q / 2))
        if s_dn > 0 and s_up < 0:
            s0, q = 0, None
        elif s_up >= 0:
            s0, q = 1, 2 * q
        else:
            s0, q = -1, q / 2
    step = 2 if s0 >= 0 else mpmath.mpf(1) / 2
    last_pos = q if s0 > 0 else None
    last_neg = q if s0 < 0 else None
    bracket = None
    if q is None:
        q0v = mpmath.mpf(sp.N(q0, mpmath.mp.dps))
        bracket = (q0v / 2, 2 * q0v)
    while bracket is None:
        if (last_pos is not None and last_neg is not None):
            bracket = (min(last_pos, last_neg), max(last_pos, last_neg))
            break
        q = q * step
        if q > Q_MAX:
            out.fixed_point = "unbounded"
            out.notes.append(f"no fixed point: L(q) > q from q0 = {q0} up to q = 1e30 (q "
                             "grows without bound)")
            return
        if q < Q_MIN:
            break
        s = _sign(*g_lo(q))
        if s > 0:
            last_pos = q
        elif s < 0:
            last_neg = q
        elif step < 1:
            break  # L(q)/q = 1 within accuracy as q -> 0: decided by the slope at 0 below
    if bracket is None:  # scanned down: L(q) < q everywhere resolved
        L0 = vd.zero_limit("length_map")
        chi0 = vd.zero_limit("chi_q")
        L0 = None if L0 is None else L0.subs({SIGMA_W2: sw2, SIGMA_B2: sb2})
        if L0 is not None and _exact_sign(L0) == 0 and chi0 is not None \
                and _exact_sign(chi0.subs({SIGMA_W2: sw2, SIGMA_B2: sb2}) - 1) <= 0:
            out.fixed_point = "zero"
            out.numbers["q_star"] = Number(mpmath.mpf(0), INF, "limit q -> 0 (L(0) = 0)",
                                           "exact")
            out.notes.append("the signal dies: q* = 0 (L(q) < q down to q -> 0, L(0) = 0)")
            return
        if L0 is not None and _exact_sign(L0) > 0:
            bracket = (mpmath.mpf(0), last_neg)
        else:
            out.numbers["q_star"] = Number(None, 0.0, lo.label,
                                           "no sign change of L(q) - q found below q0")
            out.fixed_point = "undetermined"
            return

    a, b = bracket

    def F(maps):
        def f(qv):
            v, e = maps("length_map", qv)
            return v - qv, e
        return f

    f_lo = F(lo)
    x, delta = _solve(f_lo, f_lo if hi is lo else F(hi), a, b, digits)
    route = f"root of L(q) = q ({hi.label})"
    if delta is None:
        out.numbers["q_star"] = Number(None, 0.0, route, "root not certified by a sign change")
        out.fixed_point = "undetermined"
        return
    out.numbers["q_star"] = Number(+x, digits_from_error(x, delta), route)


def _slopes_at_q(vd, sw2, sb2, lo, hi, digits, out) -> None:
    """``chi_1`` and ``chi_q`` at ``q*`` (exact where ``q*`` and the closed forms are)."""
    qn = out.numbers.get("q_star")
    if qn is None or qn.value is None:
        for name in ("chi_1", "chi_q"):
            out.numbers[name] = Number(None, 0.0, hi.label, "q* not available")
        return
    if out.fixed_point == "zero":
        for name in ("chi_1", "chi_q"):
            lim = vd.zero_limit(name)
            route = "limit q -> 0 (exact)"
            if lim is None:
                out.numbers[name] = Number(None, 0.0, route, "phi is not differentiable at 0")
            else:
                out.numbers[name] = _exact(lim.subs({SIGMA_W2: sw2, SIGMA_B2: sb2}), digits,
                                           route)
        return
    if vd.closed and _is_exact(qn):
        exact_q = _exact_q(vd, sw2, sb2, out)
        for name in ("chi_1", "chi_q"):
            expr = _substituted(vd, name, sw2, sb2, exact_q)
            out.numbers[name] = _exact(expr, digits, "closed form")
        return
    x = qn.value
    dq = abs(x) * mpmath.mpf(10) ** -qn.digits if qn.digits != INF else 0
    for name in ("chi_1", "chi_q"):
        v, e = hi(name, x)
        if dq:  # first order in the uncertainty of q*
            e += dq * _slope(lo, name, x, None, "q")
        out.numbers[name] = _number(v, e, hi.label)


def _slope(maps: Maps, name: str, qv, cv, var: str):
    """``|d form / d var|`` (var ``"q"`` or ``"c"``) by a central difference of the fast
    route with relative step ``1e-5`` (for first-order error propagation; doubled to cover
    the difference's own error)."""
    if var == "q":
        h = abs(qv) * mpmath.mpf(10) ** -5
        up, dn = maps(name, qv + h, cv)[0], maps(name, qv - h, cv)[0]
    else:
        h = min(mpmath.mpf(10) ** -5, (1 - cv) / 2)
        up, dn = maps(name, qv, cv + h)[0], maps(name, qv, cv - h)[0]
    return 2 * abs(up - dn) / (2 * h)


def _exact_q(vd, sw2, sb2, out) -> sp.Expr:
    """``q*`` as an exact SymPy number (affine closed map or identity: ``q0``)."""
    if out.fixed_point == "identity":
        return sp.nsimplify(out.numbers["q_star"].value)
    return sp.simplify(vd.q_star.subs({SIGMA_W2: sw2, SIGMA_B2: sb2}))


def _phase(out: VanillaAnalysis, digits: int) -> None:
    chi = out.numbers["chi_1"]
    if chi.value is None:
        out.phase = None
        return
    if chi.is_infinite:
        out.phase = "chaotic"
        return
    one = mpmath.mpf(1)
    err = 0 if chi.digits == INF else abs(chi.value) * mpmath.mpf(10) ** -chi.digits
    if chi.value == one and chi.digits == INF:
        out.phase = "critical"
    elif abs(chi.value - one) <= err:
        out.phase = "critical"
        out.notes.append("chi_1 = 1 within accuracy (at the order-to-chaos boundary)")
    else:
        out.phase = "ordered" if chi.value < one else "chaotic"


def _fixed_c(vd, sw2, sb2, lo, hi, digits, out) -> None:
    """``c*`` and ``chi_c`` (see the module docstring)."""
    chi1 = out.numbers["chi_1"]
    if out.phase is None:
        for name in ("c_star", "chi_c"):
            out.numbers[name] = Number(None, 0.0, hi.label, "chi_1 not available")
        return
    if out.phase in ("ordered", "critical"):
        if out.phase == "ordered" or chi1.digits == INF:
            out.numbers["c_star"] = Number(mpmath.mpf(1), INF, "ordered phase: c* = 1",
                                           "exact")
        else:  # within accuracy of the boundary: c* is 1 to the digits chi_1 has
            out.numbers["c_star"] = Number(mpmath.mpf(1), chi1.digits,
                                           "chi_1 = 1 within accuracy: c* = 1")
        out.numbers["chi_c"] = Number(chi1.value, chi1.digits, chi1.route, chi1.note)
        return
    qn = out.numbers["q_star"]
    if out.fixed_point == "zero":
        for name in ("c_star", "chi_c"):
            out.numbers[name] = Number(None, 0.0, hi.label, "q* = 0 with chi_1 > 1")
        return
    qv = qn.value
    dq = abs(qv) * mpmath.mpf(10) ** -qn.digits if qn.digits != INF else 0
    if _exact_sign(sb2) == 0 and vd.odd:
        cn = Number(mpmath.mpf(0), INF, "odd phi, sigma_b = 0: c* = 0", "exact")
    else:
        cn = _root_c(vd, lo, hi, qv, digits)
    out.numbers["c_star"] = cn
    if cn.value is None:
        out.numbers["chi_c"] = Number(None, 0.0, hi.label, "c* not available")
        return
    v, e = hi("chi_c", qv, cn.value)
    dc = 0 if cn.digits == INF else abs(cn.value) * mpmath.mpf(10) ** -cn.digits
    # first order in the uncertainties of q* and c*, with the fast route's slopes
    if dq:
        e += dq * _slope(lo, "chi_c", qv, cn.value, "q")
    if dc:
        e += dc * _slope(lo, "chi_c", qv, cn.value, "c")
    out.numbers["chi_c"] = _number(v, e, hi.label)


def _root_c(vd, lo, hi, qv, digits) -> Number:
    """The root of ``R(c) - c`` in ``[0, 1)`` (chaotic phase)."""
    def F(maps):
        def f(cv):
            v, e = maps("correlation_map", qv, cv)
            return v - cv, e
        return f

    f_lo = F(lo)
    route = f"root of R(c) = c ({hi.label})"
    a = None
    for cand in (0, mpmath.mpf(-1) / 4, mpmath.mpf(-1) / 2, mpmath.mpf(-1)):
        if _sign(*f_lo(mpmath.mpf(cand))) > 0:
            a = mpmath.mpf(cand)
            break
    b = None
    for k in range(1, 60):
        cand = 1 - mpmath.mpf(2) ** -k
        s = _sign(*f_lo(cand))
        if s < 0:
            b = cand
            break
        if s > 0 and a is not None:
            a = cand
    if a is None or b is None:
        return Number(None, 0.0, route, "no certified sign change of R(c) - c in [-1, 1)")
    x, delta = _solve(f_lo, f_lo if hi is lo else F(hi), a, b, digits, upper=mpmath.mpf(1))
    if delta is None:
        return Number(None, 0.0, route, "root not certified by a sign change")
    return Number(+x, digits_from_error(x, delta), route)
