"""Numbers for batchnorm with ``eps > 0``: the fixed point ``s*`` of the scale equation, then
``q*``, ``c*`` and the forward and backward spectra (:mod:`bnmft.derive.epsilon`).

Every form is a combination of radial means ``R[k^m rho^p M(rho)]`` over ``k ~ chi^2_{B-1}``
with ``rho^2 = k / (k + a)``, ``a = B eps / s``. Two routes evaluate them:

* float64, any ``phi``: the sphere moments ``M(rho)`` are tabulated at Chebyshev points of
  ``rho`` in ``[0, 1]`` (float64 sphere quadrature of ``phi(rho z)``) and interpolated; the
  radial mean is Gauss-Legendre in ``r = sqrt(k)`` (density ``r^(B-2) e^(-r^2/2)``, taken in
  logs so that ``B = 10^6`` neither overflows nor loses digits), on pieces that resolve the
  poles of ``rho`` at ``r = +-i sqrt(a)``. Everything is computed at two resolutions; their
  difference is the error claimed;
* mpmath, positive-homogeneous ``phi``: the sphere moments at ``rho = 1`` are the closed
  forms, ``M(rho) = rho^deg M(1)``, and the radial means are mpmath quadratures, at two
  working precisions.

``s*`` is the largest root of ``S(s) = s`` below the ``eps = 0`` scale reached by halving
(the attracting one a deep network settles on from ordinary initialisations); when ``S(s) <
s`` all the way down to ``10^-15`` of that scale the signal dies out with depth and there is
no nonzero fixed point (a regime, reported as such, with no numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache, lru_cache

import mpmath
import numpy as np
import sympy as sp

from bnmft.derive import B as B_SYM
from bnmft.derive import RELATIONS, DerivedQuantity, InvalidInput, Provenance, check_defined
from bnmft.derive.epsilon import (EPS, S, SIGMA_W, RegularisedDerivation, radials_in,
                                  scaled_sphere_moments, sphere_moments_of)

from bnmft.progress import progress

from . import sphere
from .evaluate import _related_number
from .precision import FLOAT_DIGITS, INF, Number, digits_from_error

ROUTE_FLOAT = "radial x sphere quadrature (float64)"
ROUTE_MP = "radial quadrature of closed sphere moments (mpmath)"
ROUTE_CLOSED = "closed form (Tricomi U), root of the closed scale equation"

#: Names of the scalar quantities, as in the eps = 0 analysis (plus the scale ``s*``).
SCALARS = ("s_star", "q_star", "c_star", "lambda_G", "lambda_L", "lambda_M", "gradient_rate",
           "depth_scale", "max_trainable_depth")

#: Below this fraction of the eps = 0 scale the signal counts as dead (exactly scaled
#: moments; interpolated moments resolve the scale equation down to ``_DEAD_TABLE`` or
#: ten times their own interpolation error, whichever is larger).
_DEAD = 1e-15
_DEAD_TABLE = 1e-9


def check_parameters(epsilon, sigma_w) -> tuple[sp.Expr, sp.Expr]:
    """``eps >= 0`` and ``sigma_w > 0`` as exact SymPy numbers (``"1e-3"`` is 1/1000,
    ``"sqrt(2)"`` stays exact), or :class:`~bnmft.derive.ParameterError` (an
    :class:`InvalidInput`)."""
    from bnmft.derive import vanilla_parameter

    eps = epsilon if isinstance(epsilon, sp.Basic) else vanilla_parameter(epsilon, "eps", False)
    sw = sigma_w if isinstance(sigma_w, sp.Basic) else vanilla_parameter(sigma_w, "sigma_w",
                                                                         True)
    if eps.is_negative or not eps.is_finite:
        raise InvalidInput(f"eps must be a finite number >= 0 (got {eps})")
    if not sw.is_positive or not sw.is_finite:
        raise InvalidInput(f"sigma_w must be a finite number > 0 (got {sw})")
    return eps, sw


def _mp(value: sp.Expr, dps: int) -> mpmath.mpf:
    """An exact SymPy number at ``dps`` digits (current mpmath precision)."""
    return mpmath.mpf(sp.N(value, dps + 5)._mpf_) if value != 0 else mpmath.mpf(0)


# -- float64 route ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scaled:
    """``z -> phi(rho z)`` (with ``phi'`` at ``rho z``) as the sphere quadrature sees it. The
    quadrature window is that of ``phi`` itself, which covers ``phi(rho .)`` for ``rho <= 1``."""

    base: object
    rho: float

    @property
    def expr(self):
        return self.base.expr

    @property
    def derivative(self):
        return self.base.derivative

    @property
    def kink_power(self):
        return self.base.kink_power

    @property
    def kinks(self):
        return tuple(k / self.rho for k in self.base.kink_floats)

    @property
    def kink_floats(self):
        return self.kinks

    def numpy(self, z):
        return self.base.numpy(self.rho * z)

    def numpy_derivative(self, z):
        return self.base.numpy_derivative(self.rho * z)


#: Corners of kink lines are breakpoints of the moment table up to this B: past it their
#: singular term, a power ~ B/2 of ``rho - rho_c``, is smooth to the table's accuracy (and
#: the corners of same-sign and opposite-sign kinks, 1/B apart, would bound slivers). The
#: generated modules use their ``_TANGENCY_MAX_B``, the same number.
CORNER_MAX_B = 33


def _chebyshev_points(n: int, lo: float = 0.0, hi: float = 1.0,
                      graded: bool = False) -> np.ndarray:
    """First-kind Chebyshev points mapped to ``rho`` in ``(lo, hi)``; on a graded piece
    mapped through ``rho = lo + (hi - lo) u^2`` (Chebyshev in ``u``)."""
    u = (1 + np.cos(np.pi * (np.arange(n) + 0.5) / n)) / 2
    return lo + (hi - lo) * (u * u if graded else u)


def _piece_variable(rho: np.ndarray, lo: float, hi: float, graded: bool) -> np.ndarray:
    """The Chebyshev variable ``t`` in ``[-1, 1]`` of ``rho`` on the piece ``[lo, hi]``:
    ``t = 2u - 1`` with ``u = sqrt((rho - lo)/(hi - lo))`` on a graded piece, else linear."""
    x = (rho - lo) / (hi - lo)
    return 2 * np.sqrt(np.maximum(x, 0.0)) - 1 if graded else 2 * x - 1


def _pieces(act, Bv: int) -> list[float]:
    """Breakpoints of ``rho`` in ``[0, 1]``: where a kink ``k != 0`` of ``phi`` enters the
    support ``|z| <= sqrt(B-1)`` of a sphere coordinate (``rho = |k| / sqrt(B-1)``), and (up
    to :data:`CORNER_MAX_B`) where a corner ``(a, b)`` of two kink lines enters the support
    ``Q(z1, z2) <= B - 1`` of two coordinates (correlation ``r = -1/(B-1)``, ``Q = (a^2 + b^2
    - 2 r a b)/(1 - r^2)``, ``rho = sqrt(Q/(B-1))``). Past such a point a moment is ``smooth + (rho - rho_c)^(j/2)
    smooth`` (the sphere's density vanishes like a half-integer power at its edge): pieces
    starting at a breakpoint are graded (:func:`_piece_variable`); the moments are smooth in
    that variable on each piece, not across."""
    edge = math.sqrt(Bv - 1)
    r = -1.0 / (Bv - 1)
    kinks = list(act.kink_floats)
    cuts = {abs(k) / edge for k in kinks if k != 0}
    if Bv <= CORNER_MAX_B:
        cuts |= {math.sqrt((a * a + b * b - 2 * r * a * b) / (1 - r * r)) / edge
                 for a in kinks for b in kinks if a != 0 or b != 0}
    return [0.0, *sorted(c for c in cuts if 1e-3 < c < 1), 1.0]


@dataclass
class _MomentTable:
    """Piecewise Chebyshev interpolants of sphere moments as functions of ``rho`` (two
    resolutions): ``coarse[mo]``, ``fine[mo]`` are lists of ``(lo, hi, coefficients)``; a
    piece with ``lo > 0`` starts at a breakpoint and is graded (:func:`_piece_variable`)."""

    coarse: dict
    fine: dict
    #: largest coarse - fine difference relative to each moment's scale (on a probe grid)
    error: float = 0.0

    def values(self, mo, rho: np.ndarray, fine: bool = True) -> np.ndarray:
        return _piecewise((self.fine if fine else self.coarse)[mo], rho)

    @property
    def cuts(self) -> tuple:
        """The breakpoints of ``rho`` inside ``(0, 1)``: the left ends of the graded pieces."""
        return tuple(lo for lo, _, _ in next(iter(self.fine.values()))[1:])


def _piecewise(pieces, rho: np.ndarray) -> np.ndarray:
    out = np.empty_like(rho)
    for i, (lo, hi, coef) in enumerate(pieces):
        mask = (rho >= lo) & ((rho < hi) if i < len(pieces) - 1 else (rho <= hi))
        if np.any(mask):
            out[mask] = np.polynomial.chebyshev.chebval(
                _piece_variable(rho[mask], lo, hi, lo > 0), coef)
    return out


def _slopes(pieces):
    """The derivative of a piecewise Chebyshev interpolant in its piece variable (scaled by
    ``2/(hi - lo)``: the derivative in ``rho`` on an ungraded piece)."""
    return [(lo, hi, np.polynomial.chebyshev.chebder(c) * 2 / (hi - lo)) for lo, hi, c in pieces]


def _sphere_level(act, moments, Bv: int, max_level: int = 8) -> int:
    """Smallest rule level at which the sphere moments of ``phi(rho z)`` at ``rho = 1`` (the
    most oscillatory case) agree with the next level to 1e-14 relative. A moment that is
    zero up to rounding at both levels (below 1e-15 of the largest: hardtanh's
    ``E[z1 phi'(z1) z2 phi'(z2)]`` at B = 5 is 2e-18) has no relative accuracy to reach and
    is left out (it held every batch size at the highest level)."""
    prev = sphere.moments_float(_Scaled(act, 1.0), moments, Bv, 3)
    for level in range(4, max_level + 1):
        cur = sphere.moments_float(_Scaled(act, 1.0), moments, Bv, level)
        zero = 1e-15 * max(abs(v) for v in cur.values())
        if all(abs(cur[mo] - prev[mo]) <= 1e-14 * max(abs(cur[mo]), 1e-300)
               or max(abs(cur[mo]), abs(prev[mo])) <= zero for mo in moments):
            return level - 1
        prev = cur
    return max_level - 1


def _fit(act, moments, Bv: int, n: int, level: int, cuts) -> dict:
    out = {mo: [] for mo in moments}
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        pts = _chebyshev_points(n, lo, hi, graded=lo > 0)
        rows = [sphere.moments_float(_Scaled(act, float(r)), moments, Bv, level) for r in pts]
        x = _piece_variable(pts, lo, hi, lo > 0)
        for mo in moments:
            out[mo].append((lo, hi, np.polynomial.chebyshev.chebfit(
                x, [row[mo] for row in rows], n - 1)))
    return out


def _table(act, moments, Bv: int, sizes=(24, 48, 96, 192)) -> _MomentTable:
    """Coarse and fine tables (the fine one with twice the points per piece; both at the
    sphere rule level that has converged at ``rho = 1``), doubled until they agree to 1e-13
    of each moment's scale, values and slopes, or the last size is reached."""
    level = _sphere_level(act, moments, Bv)
    cuts = _pieces(act, Bv)
    points = max(12, sizes[0] // (len(cuts) - 1))
    coarse = _fit(act, moments, Bv, points, level, cuts)
    probe = np.concatenate([_chebyshev_points(49, lo, hi, lo > 0)
                            for lo, hi in zip(cuts, cuts[1:])])
    worst = math.inf
    while points < sizes[-1]:
        points *= 2
        fine = _fit(act, moments, Bv, points, level, cuts)
        worst = 0.0
        for mo in moments:
            a, b = _piecewise(coarse[mo], probe), _piecewise(fine[mo], probe)
            worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
            # lambda_G and the other centred radial means see the slope in rho
            da, db = _piecewise(_slopes(coarse[mo]), probe), _piecewise(_slopes(fine[mo]), probe)
            worst = max(worst, float(np.max(np.abs(da - db)) / max(np.max(np.abs(db)), 1e-300)))
        if worst < 1e-13:
            break
        coarse = fine
    return _MomentTable(coarse, fine, worst)


def _radial_rule(Bv: int, a: float, nodes: int, cuts=()) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``r`` and normalised weights of the law of ``r = sqrt(k)``, ``k ~ chi^2_{B-1}``.

    Composite Gauss-Legendre on ``[max(0, r0 - 12), r0 + 12]`` (``r0`` the mode; the
    log-density falls by more than 70 outside) in unit pieces (the peak's width is about
    0.7), split geometrically towards 0 around ``sqrt(a)`` where ``rho`` has its poles, and
    at ``r_c = sqrt(a c^2/(1 - c^2))`` where ``rho = c`` crosses a breakpoint ``c`` of the
    moment table (:func:`_pieces`): past it the moments are ``smooth + (r - r_c)^(j/2)
    smooth``, so the piece starting there is graded, ``r = r_c + (q - r_c) v^2``."""
    n = Bv - 1
    r0 = math.sqrt(max(n - 1, 0.0))
    lo, hi = max(0.0, r0 - 12.0), r0 + 12.0
    brk = {lo, hi, *np.arange(math.floor(lo) + 1.0, hi, 1.0)}  # unit pieces: width of the peak
    ra = math.sqrt(a) if a > 0 else 0.0
    graded = set()
    if ra > 0:
        t = ra / 8
        while t < hi:
            if t > lo:
                brk.add(t)
            t *= 2
        for c in cuts:
            rc = ra * c / math.sqrt(1 - c * c)
            if lo < rc < hi:
                brk.add(rc)
                graded.add(rc)
    brk = sorted(brk)
    x, w = np.polynomial.legendre.leggauss(nodes)
    v, wv = (1 + x) / 2, w / 2
    rs, ws = [], []
    for p, q in zip(brk[:-1], brk[1:]):
        if p in graded:
            rs.append(p + (q - p) * v * v)
            ws.append(2 * (q - p) * v * wv)
        else:
            rs.append((q - p) / 2 * x + (q + p) / 2)
            ws.append((q - p) / 2 * w)
    r, w = np.concatenate(rs), np.concatenate(ws)
    logd = (n - 1) * np.log(r) - r * r / 2
    wt = w * np.exp(logd - logd.max())
    return r, wt / wt.sum()


class _FloatModel:
    """Radial moments at one batch size from the moment table (float64)."""

    def __init__(self, rd: RegularisedDerivation, Bv: int):
        self.rd, self.Bv = rd, Bv
        self.moments = list(sphere_moments_of(rd.radials))
        self.scaling = None
        if rd.activation.homogeneous is not None:
            # M(rho) = rho^deg M(1): exact, and exact relative accuracy as rho -> 0
            self.scaling = {mo: (float(sp.N(v.subs(B_SYM, Bv), 20)), float(deg)) for mo, (v, deg)
                            in _scaled(rd).items()}
        else:
            self.table = _table(rd.activation, self.moments, Bv)

    @property
    def cuts(self) -> tuple:
        """Breakpoints of ``rho`` where the radial rule is split (none for exact scaling)."""
        return () if self.scaling is not None else self.table.cuts

    @property
    def dead(self) -> float:
        """Fraction of the eps = 0 scale below which the sign of ``S(s) - s`` is not
        resolved: exact scaling resolves it to ``_DEAD``; a table to its own error."""
        if self.scaling is not None:
            return _DEAD
        return max(_DEAD_TABLE, 10 * self.table.error)

    def _moment(self, mo, rho, fine):
        if self.scaling is not None:
            value, deg = self.scaling[mo]
            return value * rho**deg
        return self.table.values(mo, rho, fine)

    def radials(self, s: float, eps: float, fine: bool = True, only=None) -> dict:
        """Radial moments at scale ``s`` (``only``: a subset of them)."""
        a = self.Bv * eps / s
        r, w = _radial_rule(self.Bv, a, 40 if fine else 20, self.cuts)
        k = r * r
        kbar = float(np.dot(w, k))
        rho = np.sqrt(k / (k + a)) if a > 0 else np.ones_like(k)
        cache = {}
        out = {}
        for rm in (self.rd.radials if only is None else only):
            if self.scaling is not None and rm.moment is not None and \
                    rm.moment not in self.scaling:
                continue  # a divergent moment (phi' with a Dirac mass): its entries have notes
            if rm.moment is None:
                val = 1.0
            else:
                if rm.moment not in cache:
                    cache[rm.moment] = self._moment(rm.moment, rho, fine)
                val = cache[rm.moment]
            # centred about the rule's own mean of k (exactly zero weight sum: no O(B) residue)
            weight = k ** (rm.m - 1) * (k - kbar) if rm.centred else k**rm.m
            out[rm] = float(np.dot(w, weight * rho**rm.p * val))
        return out


@lru_cache(maxsize=64)
def _float_model(rd: RegularisedDerivation, Bv: int) -> _FloatModel:
    """The moment table of ``rd`` at ``Bv`` (independent of eps and sigma_w), cached."""
    return _FloatModel(rd, Bv)


@cache
def _numpy_function(form: sp.Expr, radials: tuple):
    return sp.lambdify([B_SYM, EPS, SIGMA_W, S, *[r.symbol for r in radials]], form, "numpy")


@cache
def _mpmath_function(form: sp.Expr, radials: tuple):
    return sp.lambdify([B_SYM, EPS, SIGMA_W, S, *[r.symbol for r in radials]], form, "mpmath")


def _eval(q: DerivedQuantity, rad: dict, Bv, eps, sw, s, module="numpy"):
    used = tuple(radials_in(q.moment_form))
    if module == "numpy":
        fn = _numpy_function(q.moment_form, used)
    else:  # B as an mpf: an int would make (B - 1)/(B - 2) a float64 division
        fn, Bv = _mpmath_function(q.moment_form, used), mpmath.mpf(Bv)
    return fn(Bv, eps, sw, s, *[rad[r] for r in used])


# -- the fixed point --------------------------------------------------------------------------


class NoFixedPoint(ArithmeticError):
    """The scale equation has no nonzero root: the signal dies out with depth."""


def _solve_scale(S_of, s0, tol_rel, dead=_DEAD):
    """Largest ``s`` below ``s0`` (scanning by halves, then a few doublings up) with
    ``S(s) = s``, by bisection on ``log s`` to ``tol_rel``; :class:`NoFixedPoint` if none."""
    def gap(s):
        return S_of(s) - s

    hi, ghi = s0, gap(s0)
    if ghi > 0:  # the root lies above s0
        for _ in range(60):
            lo, glo = hi, ghi
            hi, ghi = 2 * hi, gap(2 * hi)
            if ghi <= 0:
                break
        else:
            raise NoFixedPoint("S(s) > s for every scale tried (the scale grows without bound)")
    else:
        lo = hi
        while True:
            lo = lo / 2
            if lo < s0 * dead:
                raise NoFixedPoint(f"S(s) < s down to {dead:.0e} of the eps = 0 scale: the "
                                   "signal dies out with depth (no nonzero fixed point)")
            glo = gap(lo)
            if glo > 0:
                break
            hi, ghi = lo, glo
    # bisection in log s: robust, and the map is cheap
    while hi - lo > tol_rel * hi:
        mid = math.sqrt(lo * hi)
        if gap(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# -- results ------------------------------------------------------------------------------------


@dataclass
class RegularisedAnalysis:
    """All ``eps > 0`` quantities of one activation at one batch size.

    ``regime`` is ``"fixed point"`` or ``"no nonzero fixed point"`` (then ``numbers`` is
    empty and ``note`` says why). ``numbers`` holds :data:`SCALARS` and every spectral entry
    (``forward_G``, ..., ``backward_M``)."""

    activation: object
    batch_size: int
    epsilon: object
    sigma_w: object
    regime: str = "fixed point"
    note: str = ""
    numbers: dict[str, Number] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    bsb1_stable: bool | None = None
    stability_note: str = ""

    def shortfalls(self, digits: int, names=SCALARS) -> list[str]:
        """Numbers among ``names`` (default: the scalar quantities) short of ``digits``."""
        from .precision import shortfalls

        return shortfalls({n: self.numbers[n] for n in names if n in self.numbers}, digits)

    def spectrum(self, rd: RegularisedDerivation):
        """The forward and backward spectra as a :class:`~.spectrum.SpectrumAnalysis`."""
        from .spectrum import SpectrumAnalysis, SpectrumNumber

        out = SpectrumAnalysis(self.activation, self.batch_size, regime=self.regime,
                               note=self.note, bsb1_stable=self.bsb1_stable,
                               stability_note=self.stability_note)
        if self.regime == "fixed point":
            for e in rd.entries:
                num = self.numbers.get(e.name) or Number(None, 0.0, "not available", e.note)
                getattr(out, e.direction).append(
                    SpectrumNumber(e.name, e.space, self.dims[e.name], num))
        return out


def _relation_quantities() -> dict[str, DerivedQuantity]:
    prov = Provenance("xi = 1/log(gradient_rate), 16 xi (paper Sec. 4)", "relation")
    return {name: DerivedQuantity(name=name, moment_form=sp.Integer(0), provenance=prov,
                                  relation=rel) for name, rel in RELATIONS.items()}


def _assemble(rd, Bv, values: dict, errors: dict, route: str, digits: int, cap: float):
    """Numbers from ``{name: value}`` and ``{name: abs error}``; aliases and relations."""
    nums = {}
    for name, v in values.items():
        d = min(digits_from_error(v, errors[name]) - 0.5, cap) if errors[name] else cap
        nums[name] = Number(v, max(d, 0.0), route)
    for e in rd.entries:
        if e.note:
            nums[e.name] = Number(None, 0.0, "not available", e.note)
    backward = [e.name for e in rd.entries if e.direction == "backward" and e.space != "kernel"]
    missing = [n for n in backward if nums[n].value is None]
    top = missing[0] if missing else max(backward, key=lambda n: nums[n].value)
    nums["lambda_G"], nums["lambda_L"], nums["lambda_M"] = (
        nums["forward_G"], nums["forward_L"], nums["forward_M"])
    nums["gradient_rate"] = nums[top]
    for name, q in _relation_quantities().items():
        nums[name] = _related_number(q, nums, digits)
    return nums


def _float_numbers(rd: RegularisedDerivation, Bv: int, eps: float, sw: float, digits: int,
                   solve_only: bool = False):
    model = _float_model(rd, Bv)
    needed = radials_in(rd.scale_map.moment_form)
    evaluable = [q for q in rd.evaluable]
    res = []
    for fine in ((True,) if solve_only else (False, True)):
        def S_of(s, fine=fine):
            return float(_eval(rd.scale_map, model.radials(s, eps, fine, needed), Bv, eps, sw,
                               s))
        s0 = sw * sw * float(_eval(rd.scale_map, model.radials(1.0, 0.0, fine, needed), Bv,
                                   0.0, 1.0, 1.0))
        # interpolated moments carry an absolute error ~1e-16: below ~1e-9 of the scale the
        # sign of S(s) - s is not resolved, so the scan stops there
        s = _solve_scale(S_of, s0, 1e-15, model.dead)
        if solve_only:
            return {"s_star": s}, {}
        rad = model.radials(s, eps, fine)
        vals = {"s_star": s}
        vals.update({q.name: float(_eval(q, rad, Bv, eps, sw, s)) for q in evaluable
                     if q.name != "scale_map"})
        res.append(vals)
    coarse, fine = res
    errors = {n: abs(fine[n] - coarse[n]) + 1e-15 * abs(fine[n]) for n in fine}
    return fine, errors


# -- mpmath route (positive-homogeneous phi) ---------------------------------------------------


def _scaled(rd: RegularisedDerivation) -> dict:
    """``{moment: (closed value at rho = 1, degree)}`` of a positive-homogeneous ``phi``."""
    return scaled_sphere_moments(rd.activation, sphere_moments_of(rd.radials))


def _mp_radial_mean(Bv: int, a, m: int, p, centred: bool = False) -> mpmath.mpf:
    """``E[k^m rho^p]`` (``centred``: ``E[k^(m-1) (k - B + 1) rho^p]``), ``k ~ chi^2_{B-1}``,
    ``rho^2 = k/(k+a)``, by quadrature in ``k`` (log density; pieces at the mode and +-10, 40
    standard deviations)."""
    n = mpmath.mpf(Bv - 1)
    lognorm = n / 2 * mpmath.log(2) + mpmath.loggamma(n / 2)
    mode = max(n - 2, mpmath.mpf(1))
    sd = mpmath.sqrt(2 * n)
    p = sp.Rational(p)
    half_p = mpmath.mpf(int(p.p)) / (2 * int(p.q))

    def f(k):
        if k == 0:
            return mpmath.mpf(0)
        if centred:
            logd = (n / 2 - 2 + m) * mpmath.log(k) - k / 2 - lognorm
            return mpmath.exp(logd) * (k - n) * (k / (k + a)) ** half_p
        logd = (n / 2 - 1 + m) * mpmath.log(k) - k / 2 - lognorm
        return mpmath.exp(logd) * (k / (k + a)) ** half_p

    pts = [mpmath.mpf(0)]
    for t in (-40, -10, 0, 10, 40):
        v = mode + t * sd
        if v > pts[-1]:
            pts.append(v)
    if a > 0:
        pts = sorted(set(pts) | {a * 2**j for j in range(-3, 4) if a * 2**j < pts[-1]})
    return mpmath.quad(f, pts + [mpmath.inf])


def _mp_numbers_at(rd, Bv, eps_exact, sw_exact, dps: int, s_start: float):
    scaled = _scaled(rd)
    degree = {mo: deg for mo, (_, deg) in scaled.items()}
    with mpmath.workdps(dps):
        eps, sw = _mp(eps_exact, dps), _mp(sw_exact, dps)
        sphere_mp = {mo: _mp(v.subs(B_SYM, Bv), dps) for mo, (v, _) in scaled.items()}
        cache: dict = {}

        def radials(s):
            a = Bv * eps / s
            out = {}
            for rm in rd.radials:
                if rm.moment is not None and rm.moment not in sphere_mp:
                    continue
                deg = degree.get(rm.moment, 0)
                key = (s, rm.m, rm.p + deg, rm.centred)
                if key not in cache:
                    cache[key] = _mp_radial_mean(Bv, a, rm.m, sp.Rational(rm.p + deg),
                                                 rm.centred)
                out[rm] = cache[key] * (sphere_mp[rm.moment] if rm.moment is not None else 1)
            return out

        def S_of(s):
            return _eval(rd.scale_map, radials(s), Bv, eps, sw, s, "mpmath")

        s = mpmath.findroot(lambda t: S_of(t) - t, (mpmath.mpf(s_start),
                                                        mpmath.mpf(s_start) * (1 + 1e-9)),
                            solver="secant")
        rad = radials(s)
        out = {"s_star": s}
        for q in rd.evaluable:
            if q.name != "scale_map":
                out[q.name] = _eval(q, rad, Bv, eps, sw, s, "mpmath")
        return out


def _mp_numbers(rd, Bv, eps, sw, digits: int):
    """The mpmath route at two working precisions, from the float64 root of the scale
    equation (secant steps; a dead signal raises :class:`NoFixedPoint` there)."""
    start, _ = _float_numbers(rd, Bv, float(eps), float(sw), FLOAT_DIGITS, solve_only=True)
    lo = _mp_numbers_at(rd, Bv, eps, sw, digits + 10, start["s_star"])
    hi = _mp_numbers_at(rd, Bv, eps, sw, digits + 20, start["s_star"])
    errors = {n: abs(hi[n] - lo[n]) for n in hi}
    with mpmath.workdps(digits + 20):
        errors = {n: e + abs(hi[n]) * mpmath.mpf(10) ** -(digits + 8) for n, e in errors.items()}
    return hi, errors


# -- public entry point -------------------------------------------------------------------------


#: Largest batch size at which the Tricomi closed forms are evaluated (mpmath's series for
#: U with half-integer parameters of order B take minutes beyond a few thousand).
CLOSED_MAX_B = 4096


def _closed_pair(rd, Bv, eps, sw, digits):
    """Closed forms at two working precisions, or None."""
    guard = math.ceil(math.log10(Bv))  # centred radial means cancel O(B) terms
    lo = closed_numbers(rd, Bv, eps, sw, digits + 10 + guard)
    hi = closed_numbers(rd, Bv, eps, sw, digits + 20 + guard) if lo is not None else None
    if hi is None:
        return None
    with mpmath.workdps(digits + 30):
        errors = {n: abs(hi[n] - lo[n]) + abs(hi[n]) * mpmath.mpf(10) ** -(digits + 8)
                  for n in hi}
    return hi, errors


#: The routes :func:`analyze_regularised` can be asked for.
ROUTES = ("closed", "radial", "float")


def _route_numbers(rd, Bv, eps, sw, digits, homogeneous, route=None):
    """``(values, errors, route, digit cap)`` by the best route for this phi and B: closed
    forms (positive-homogeneous phi, B <= CLOSED_MAX_B), else the mpmath radial route
    (positive-homogeneous phi beyond float64 digits), else float64; or the ``route`` asked
    for (``"closed"`` and ``"radial"`` need positive-homogeneous phi)."""
    if route == "float":
        return (*_float_numbers(rd, Bv, float(eps), float(sw), digits), ROUTE_FLOAT,
                FLOAT_DIGITS)
    if route == "radial" and homogeneous:
        return (*_mp_numbers(rd, Bv, eps, sw, digits), ROUTE_MP, digits + 5)
    if homogeneous and Bv <= CLOSED_MAX_B and route in (None, "closed"):
        pair = _closed_pair(rd, Bv, eps, sw, digits)
        if pair is not None:
            return (*pair, ROUTE_CLOSED, digits + 5)
    if homogeneous and digits > FLOAT_DIGITS:
        return (*_mp_numbers(rd, Bv, eps, sw, digits), ROUTE_MP, digits + 5)
    return (*_float_numbers(rd, Bv, float(eps), float(sw), digits), ROUTE_FLOAT, FLOAT_DIGITS)


def analyze_regularised(rd: RegularisedDerivation, batch_sizes, epsilon, sigma_w="1",
                        digits: int = 16, route: str | None = None) -> list[RegularisedAnalysis]:
    """Every ``eps > 0`` quantity of ``rd`` at each (finite) batch size, each number to
    ``digits`` or marked as falling short: closed forms for positive-homogeneous ``phi``
    (radial mpmath quadrature beyond :data:`CLOSED_MAX_B`), the float64 route (at most
    :data:`FLOAT_DIGITS` digits) for any other ``phi``. A dead signal is a regime, not an
    error: ``regime = "no nonzero fixed point"`` and no numbers. ``route`` forces one of
    :data:`ROUTES` (for verification)."""
    if route is not None and route not in ROUTES:
        raise ValueError(f"route must be one of {', '.join(ROUTES)} (got {route!r})")
    from .evaluate import stability

    eps, sw = check_parameters(epsilon, sigma_w)
    if eps.is_zero:
        raise InvalidInput("analyze_regularised needs eps > 0 (eps = 0 is the scale-free theory)")
    # closed forms (and the exactly scaled radial route) for every quantity that has one;
    # entries needing divergent moments (phi' with a Dirac mass) are reported as such
    homogeneous = rd.activation.homogeneous is not None and rd.scale_map.expr is not None
    check_defined(rd.activation, [b for b in batch_sizes if b != INF])
    out = []
    for Bv in progress(list(batch_sizes), "eps > 0 quantities"):
        if Bv == INF or int(Bv) != Bv or Bv < 4:
            raise InvalidInput(f"eps > 0 needs finite integer batch sizes >= 4 (got {Bv})")
        Bv = int(Bv)
        res = RegularisedAnalysis(rd.activation, Bv, eps, sw)
        res.dims = {e.name: int(e.dim.subs(B_SYM, Bv)) for e in rd.entries}
        try:
            values, errors, used, cap = _route_numbers(rd, Bv, eps, sw, digits, homogeneous,
                                                       route)
        except NoFixedPoint as err:
            res.regime, res.note = "no nonzero fixed point", str(err)
            out.append(res)
            continue
        res.numbers = _assemble(rd, Bv, values, errors, used, digits, cap)
        forward = [e.name for e in rd.entries if e.direction == "forward" and e.space != "kernel"]
        res.bsb1_stable, res.stability_note = stability(res.numbers, forward)
        out.append(res)
    return out


@cache
def _closed_function(expr: sp.Expr):
    hyperu = {"TricomiU": lambda a, b, z: mpmath.hyperu(a, b, z, maxterms=4000)}
    return sp.lambdify([B_SYM, EPS, SIGMA_W, S], expr, [hyperu, "mpmath"])


def closed_numbers(rd: RegularisedDerivation, Bv: int, epsilon, sigma_w, dps: int):
    """Every closed form of ``rd`` (positive-homogeneous ``phi``) at its own fixed point:
    ``s*`` is the root of the closed scale equation ``S(s) = s`` (Tricomi U by mpmath;
    secant steps from the float64 root), independent of the radial quadratures. Returns
    ``{name: mpf}`` (``s_star`` included), or None where a Tricomi series does not converge
    within its term budget; :class:`NoFixedPoint` for a dead signal."""
    if rd.scale_map.expr is None:
        return None
    eps, sw = check_parameters(epsilon, sigma_w)
    start, _ = _float_numbers(rd, Bv, float(eps), float(sw), FLOAT_DIGITS, solve_only=True)
    names = [q for q in rd.evaluable if q.expr is not None and q.name != "scale_map"]
    try:
        with mpmath.workdps(dps + 10):
            e, w, b = _mp(eps, dps + 10), _mp(sw, dps + 10), mpmath.mpf(Bv)
            S_of = _closed_function(rd.scale_map.expr)
            s0 = mpmath.mpf(start["s_star"])
            s = mpmath.findroot(lambda t: S_of(b, e, w, t) - t, (s0, s0 * (1 + 1e-9)),
                                solver="secant")
            out = {"s_star": s}
            out.update({q.name: _closed_function(q.expr)(b, e, w, s) for q in names})
            return {k: +v for k, v in out.items()}
    except (mpmath.libmp.NoConvergence, ZeroDivisionError, ValueError):
        return None


# -- where the signal dies and where gradients stop exploding -----------------------------------


@dataclass
class EpsilonScan:
    """For one activation, batch size and ``sigma_w``: ``eps_signal``, beyond which the
    nonzero fixed point is gone (the signal dies with depth), and ``eps_gradient``, where the
    gradient rate on the fixed-point branch falls through 1 (None if it stays above 1 up to
    ``eps_signal``; ``rate_at_signal`` is its value just below). Both are :class:`Number`
    objects (value None where not found in the scanned range ``[eps_min, eps_max]``)."""

    activation: object
    batch_size: int
    sigma_w: object
    eps_signal: Number
    eps_gradient: Number
    rate_at_signal: Number | None = None
    eps_range: tuple = ()
    notes: list = field(default_factory=list)


#: Range scanned, in units of ``sigma_w^2`` (only ``eps / sigma_w^2`` matters).
SCAN_RANGE = (1e-8, 1e4)
_SCAN_ROUTE = "bisection on the float64 scale equation"


def _alive(rd, Bv, eps, sw) -> bool:
    try:
        _float_numbers(rd, Bv, eps, sw, FLOAT_DIGITS, solve_only=True)
        return True
    except NoFixedPoint:
        return False


def _rate(rd, Bv, eps, sw) -> tuple[float, float]:
    """Gradient rate on the branch at ``eps`` and its absolute error (float64 route)."""
    values, errors = _float_numbers(rd, Bv, eps, sw, FLOAT_DIGITS)
    names = [e.name for e in rd.entries if e.direction == "backward" and e.space != "kernel"
             and not e.note]
    top = max(names, key=lambda n: values[n])
    return values[top], errors[top]


def epsilon_scan(rd: RegularisedDerivation, Bv: int, sigma_w="1", points: int = 25
                 ) -> EpsilonScan:
    """Locate ``eps_signal`` (bisection in ``log eps`` on the existence of a nonzero root of
    the scale equation) and ``eps_gradient`` (the first sign change of ``rate - 1`` on a
    logarithmic grid of ``points`` values below ``eps_signal``, refined by bisection), both
    by the float64 route; digits from the bracket, the resolution of the scale equation
    near a vanishing root, and the rate's own error over its slope (paper Fig 4c,d)."""
    _, sw_exact = check_parameters("1", sigma_w)
    sw = float(sw_exact)
    lo_eps, hi_eps = SCAN_RANGE[0] * sw * sw, SCAN_RANGE[1] * sw * sw
    scan = EpsilonScan(rd.activation, Bv, sw_exact, Number(None, 0.0, _SCAN_ROUTE),
                       Number(None, 0.0, _SCAN_ROUTE), eps_range=(lo_eps, hi_eps))
    if not _alive(rd, Bv, lo_eps, sw):
        scan.notes.append(f"no nonzero fixed point even at eps = {lo_eps:.0e}")
        return scan
    dead_frac = _float_model(rd, Bv).dead
    if _alive(rd, Bv, hi_eps, sw):
        scan.notes.append(f"a nonzero fixed point exists up to eps = {hi_eps:.0e}")
        top = hi_eps
    else:
        grid = np.geomspace(lo_eps, hi_eps, 13)
        a = lo_eps
        for e in grid[1:]:
            if not _alive(rd, Bv, float(e), sw):
                b = float(e)
                break
            a = float(e)
        tol = 10 * dead_frac
        while b - a > tol * b:
            mid = math.sqrt(a * b)
            if _alive(rd, Bv, mid, sw):
                a = mid
            else:
                b = mid
        # A continuous loss (the root vanishes linearly, s* ~ C (eps_signal - eps)) is located
        # only as well as small roots are resolved; there the bisection is checked against
        # a quadratic extrapolation of the branch to s* = 0 from three points below, and the
        # claim is the digits on which the two agree. A jump (the root stays of order s0)
        # is located to the bisection's width.
        def root(e):
            return _float_numbers(rd, Bv, e, sw, FLOAT_DIGITS, solve_only=True)[0]["s_star"]

        s0 = root(a * 1e-12)
        probe = a * (1 - 1e-3)
        s_probe = root(probe)
        if s_probe < 1e-2 * s0:
            es = [a * (1 - j * 1e-4) for j in (1, 2, 3)]
            ss = [root(e) for e in es]
            coef = np.polyfit(ss, es, 2)  # eps as a function of s* near the end of the branch
            spread = abs(float(coef[-1]) - b) + (b - a)
        else:
            spread = (b - a) + 1e-15 * b
        digits = min(-math.log10(spread / b) - 0.3, 12.0)
        scan.eps_signal = Number(b, max(digits, 0.0), _SCAN_ROUTE)
        top = probe
        rate, err = _rate(rd, Bv, probe, sw)
        scan.rate_at_signal = Number(rate, min(digits_from_error(rate, err), 6.0),
                                     "float64 route at 1e-3 below eps_signal")
        if abs(rate - 1) < 1e-2:
            scan.notes.append("gradient_rate tends to 1 as eps -> eps_signal: the explosion "
                              "ends where the signal dies")
    grid = np.geomspace(lo_eps, top * (1 - 1e-9), points)
    prev = None
    for e in grid:
        r, _ = _rate(rd, Bv, float(e), sw)
        if prev is not None and (prev[1] - 1) * (r - 1) < 0:
            a, b = prev[0], float(e)
            ra = prev[1]
            while b - a > 1e-12 * b:
                mid = math.sqrt(a * b)
                rm, _ = _rate(rd, Bv, mid, sw)
                if (rm - 1) * (ra - 1) > 0:
                    a, ra = mid, rm
                else:
                    b = mid
            root = math.sqrt(a * b)
            r1, e1 = _rate(rd, Bv, root * (1 - 1e-4), sw)
            r2, e2 = _rate(rd, Bv, root * (1 + 1e-4), sw)
            slope = abs(r2 - r1) / (2e-4 * root)
            err = max(e1, e2) / slope if slope > 0 else root
            scan.eps_gradient = Number(root, max(min(digits_from_error(root, err) - 1, 12.0),
                                                 0.0), "bisection on the float64 gradient rate")
            break
        prev = (float(e), r)
    else:
        scan.notes.append("gradient_rate stays above 1 on the whole fixed-point branch"
                          if prev is not None and prev[1] > 1 else
                          "gradient_rate stays below 1 on the whole fixed-point branch")
    return scan
