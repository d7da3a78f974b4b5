"""Two routes for every number: compare derived values with independent references.

For activations with closed forms each quantity is evaluated three ways -- SymPy
``evalf`` of the derived expression, the generated numpy module, the generated and
compiled C module -- and compared with the mpmath hyperspherical-quadrature reference
(paper Thm 4 form for the fixed point, the backward-map moment form for the gradient
rate, the sphere-moment Rayleigh quotients for the forward spectrum). For small ``B`` the
forward eigenvalues are also compared with the brute-force Jacobian of the Laplace-method
map. Activations without closed forms compare their fast routes (float64) and the
Gegenbauer route (mpmath, smooth ``phi``) with the same reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np

from bnmft.derive import B as B_SYM
from bnmft.derive import Derivation, check_batch_sizes, check_defined
from bnmft.limits import DEFAULT_BATCH_SIZES
from bnmft.progress import progress

from . import sphere
from .evaluate import NumericalFailure, analyze, numbers_from_moments
from .precision import FLOAT_DIGITS, agreeing_digits, digits_from_error
from .sphere import QuadratureError

#: Largest batch size for the brute-force Jacobian (its cost grows like B^6).
BRUTE_FORCE_MAX_B = 8
BRUTE_FORCE_DIGITS = 10
#: The brute-force backward operator needs ``E[phi'(z)^2] < oo``: degree ``alpha > 1/2``.
BACKWARD_MIN_ALPHA = 0.5


def unavailable_routes(deriv: Derivation) -> dict[str, str]:
    """Routes that cannot run for ``deriv``, with the reason (e.g. codegen of ``hyper``)."""
    if not _has_generated(deriv):
        return {}
    return {route: str(mod) for route, mod in _generated_modules(deriv).items()
            if isinstance(mod, Exception)}


@dataclass
class Check:
    """One comparison: ``value`` from ``route`` against ``reference``."""

    quantity: str
    batch_size: int
    route: str
    value: object
    reference: object
    reference_route: str
    reference_digits: float
    required: float
    note: str = ""

    @property
    def agreement(self) -> float:
        """Digits on which value and reference agree (as computed, uncapped)."""
        if self.value is None or self.reference is None:
            return 0.0
        return agreeing_digits(self.value, self.reference)

    @property
    def digits(self) -> float:
        """Digits confirmed: the agreement, but never more than the reference achieved."""
        return min(self.agreement, self.reference_digits)

    @property
    def ok(self) -> bool:
        return self.value is not None and self.digits >= self.required


def _references(deriv: Derivation, Bv: int, digits: int) -> dict:
    """Reference numbers from the mpmath sphere quadrature through the moment forms (never
    from a closed form). Quantities that are infinite by derivation (``E[phi'^2] = oo``, and
    what follows from it) have no quadrature and no reference: they are not checked."""
    skip = _infinite_names(deriv)
    names = [q.name for q in deriv.quantities if q.relation is None and q.name not in skip]
    with mpmath.workdps(digits + 10):
        res = sphere.moments_mp(deriv.activation, list(deriv.moments), Bv, digits + 2)
        vals = {mo: v for mo, (v, e) in res.items()}
        errs = {mo: e for mo, (v, e) in res.items()}
        nums = numbers_from_moments(deriv, Bv, vals, errs, "sphere quadrature (mpmath)",
                                    names=names)
    return {k: v for k, v in nums.items() if k not in skip}


def _infinite_names(deriv: Derivation) -> set[str]:
    """Quantities whose closed form is infinite, and those defined through them."""
    out = {q.name for q in deriv.quantities if q.expr is not None and q.expr.is_infinite}
    for q in deriv.quantities:
        if set(q.depends_on) & out:
            out.add(q.name)
    return out


def _has_generated(deriv: Derivation) -> bool:
    """Closed forms for every primary quantity: the generated modules can be checked."""
    return deriv.activation.homogeneous is not None and deriv.has_closed_forms


def _generated_modules(deriv):
    from bnmft.codegen import CodegenError, generate, load_c, load_numpy

    out = {}
    try:
        np_src = generate(deriv, lang="numpy", module="bnmft_verify")
        out["generated numpy module"] = load_numpy(np_src, "bnmft_verify")
    except CodegenError as err:
        out["generated numpy module"] = err
    try:
        c_src = generate(deriv, lang="c", module="bnmft_verify")
        out["generated C module"] = load_c(c_src, "bnmft_verify")
    except CodegenError as err:
        out["generated C module"] = err
    return out


def verify(deriv: Derivation, batch_sizes=DEFAULT_BATCH_SIZES, digits: int = 30) -> list[Check]:
    """All checks for ``deriv`` at ``batch_sizes`` (finite), to ``digits`` where mpmath is
    used: every route of every quantity against the mpmath sphere-quadrature reference.
    Batch sizes outside the theory raise :class:`~bnmft.derive.InvalidInput`."""
    batch_sizes = check_batch_sizes(batch_sizes, finite=True)
    check_defined(deriv.activation, batch_sizes)
    with mpmath.workdps(digits + 15):  # every mpf made below keeps the digits it is given
        return _verify(deriv, batch_sizes, digits)


def _reference_checks(deriv: Derivation, Bv: int, digits: int, checks: list):
    """The references at ``Bv`` and ``add(name, route, value, required, note="")``, which
    appends a :class:`Check` of ``value`` against the reference of ``name`` to ``checks``."""
    try:
        refs = _references(deriv, Bv, digits)
    except QuadratureError as err:
        raise NumericalFailure(f"reference at B={Bv}: {err}") from None

    def add(name, route, value, required, note=""):
        ref = refs[name]
        checks.append(Check(name, Bv, route, value, ref.value, ref.route, ref.digits,
                            required, note))

    return refs, add


def _verify(deriv: Derivation, batch_sizes, digits: int) -> list[Check]:
    act = deriv.activation
    skip = _infinite_names(deriv)
    checks: list[Check] = []
    modules = _generated_modules(deriv) if _has_generated(deriv) else {}
    closed = {n: q for n, q in deriv.closed.items() if n not in skip}
    open_ = [q.name for q in deriv.quantities if q.expr is None]
    for Bv in batch_sizes:
        refs, add = _reference_checks(deriv, Bv, digits, checks)

        for name, q in closed.items():
            # evalf with subs: substituting first would expand gamma(B/2) exactly
            value = q.expr.evalf(digits + 10, subs={B_SYM: Bv})
            add(name, "SymPy evalf of the closed form", mpmath.mpf(value) if value.is_finite
                else mpmath.inf, digits)
            for route, mod in modules.items():
                if isinstance(mod, Exception):
                    continue  # reported once by the caller (see unavailable_routes)
                out = float(np.asarray(getattr(mod, name)(np.array([float(Bv)])))[0])
                add(name, route, mpmath.mpf(out) if math.isfinite(out) else mpmath.inf,
                    min(digits, FLOAT_DIGITS))
        if open_:
            fast = analyze(deriv, [Bv], min(digits, FLOAT_DIGITS))[0]
            for name in open_:
                if name in refs:
                    num = fast.numbers[name]
                    add(name, "fast route: " + num.route, num.value, min(digits, FLOAT_DIGITS))
            checks.extend(_gegenbauer_checks(act, deriv, Bv, digits, refs))
            checks.extend(_kinked_thm9_checks(act, Bv, digits, refs))
        checks.extend(_cartesian_checks(act, deriv, Bv, digits, refs))
        if act.homogeneous is not None and act.homogeneous.alpha > 0 and Bv <= BRUTE_FORCE_MAX_B:
            from .bruteforce import forward_spectrum

            spaces = {sp_.space: sp_ for sp_ in forward_spectrum(act, Bv)}
            for name, space in (("lambda_L", "L"), ("lambda_M", "M")):
                add(
                    name,
                    "brute-force Jacobian of the Laplace map",
                    mpmath.mpf(spaces[space].eigenvalue),
                    min(digits, BRUTE_FORCE_DIGITS),
                )
    return checks


def _cartesian_checks(act, deriv, Bv, digits, refs) -> list[Check]:
    """The Cartesian (paper Thm 7 form) quadrature: a second high-precision route."""
    from .cartesian import moments_cartesian

    if Bv < 5:
        return []
    moments = list(deriv.moments)
    try:
        res = moments_cartesian(act, moments, Bv, digits + 2)
    except QuadratureError as err:
        return [Check(name, Bv, "Cartesian quadrature, Thm 7 form (mpmath)", None, refs[name].value,
                      refs[name].route, refs[name].digits, digits, note=str(err))
                for name in refs]
    vals = {mo: v for mo, (v, e) in res.items()}
    errs = {mo: e for mo, (v, e) in res.items()}
    nums = numbers_from_moments(deriv, Bv, vals, errs, "Cartesian quadrature, Thm 7 form (mpmath)",
                                names=refs)
    out = []
    for name in refs:
        ref = refs[name]
        out.append(Check(name, Bv, nums[name].route, nums[name].value, ref.value, ref.route,
                         ref.digits, digits))
    return out


def _kinked_thm9_checks(act, Bv, digits, refs) -> list[Check]:
    """Kinked phi: the Thm 9 series in its split form (the ``c_k = 1`` part resummed exactly,
    the rest summed with a tail estimate), float64. Its series converges like ``1/K``, so the
    check asks for the digits the route claims from its own error estimate (at most ``D``)."""
    if not act.kinks or act.singular or act.derivative_has_delta:
        return []
    from . import gegenbauer

    values, errors = gegenbauer.gradient_rate_thm9(act, [float(Bv)])
    value, err = float(values[0]), float(errors[0])
    claimed = digits_from_error(value, err) if math.isfinite(value) else 0.0
    ref = refs["gradient_rate"]
    required = max(1, min(digits, FLOAT_DIGITS, math.floor(claimed)))
    return [Check("gradient_rate", Bv, "Gegenbauer sum, paper Thm 9, split form (float64)",
                  mpmath.mpf(value) if math.isfinite(value) else None, ref.value, ref.route,
                  ref.digits, required, note=f"route claims {claimed:.1f} digits")]


def _gegenbauer_checks(act, deriv, Bv, digits, refs) -> list[Check]:
    """The Gegenbauer (Funk-Hecke, paper Thm 9) route at mpmath precision, smooth phi only."""
    if act.kinks or act.singular:
        return []
    from . import gegenbauer

    if not hasattr(gegenbauer, "moments_gegenbauer_mp"):
        return []
    moments = list(deriv.moments)
    out = []
    want_rate = hasattr(gegenbauer, "gradient_rate_thm9_mp") and "gradient_rate" in refs
    with mpmath.workdps(digits + 10):
        if want_rate:
            # one pass for the moments and the Thm 9 rate: the same nodes and coefficients
            res = gegenbauer.moments_and_rate_mp(act, moments, Bv, digits + 2)
            rate, _err = res.pop("rate")
        else:
            res = gegenbauer.moments_gegenbauer_mp(act, moments, Bv, digits + 2)
        vals = {mo: v for mo, (v, e) in res.items()}
        errs = {mo: e for mo, (v, e) in res.items()}
        nums = numbers_from_moments(deriv, Bv, vals, errs, "Gegenbauer/Funk-Hecke (mpmath)",
                                    names=refs)
        for name in refs:
            ref = refs[name]
            out.append(Check(name, Bv, nums[name].route, nums[name].value, ref.value, ref.route,
                             ref.digits, digits))
        if want_rate:
            ref = refs["gradient_rate"]
            out.append(Check("gradient_rate", Bv, "Gegenbauer sum, paper Thm 9 (mpmath)", rate,
                             ref.value, ref.route, ref.digits, digits))
    return out


# -- spectra -----------------------------------------------------------------------------------


def verify_spectrum(spec, batch_sizes=(6, 8, 32), digits: int = 20) -> list[Check]:
    """Every eigenvalue of a :class:`~bnmft.derive.Spectrum` against the mpmath sphere
    quadrature of its moment form: the closed form (SymPy evalf) where there is one, the
    fast float route otherwise, the Cartesian and Gegenbauer quadratures, and for
    positive-homogeneous ``phi`` at ``B <= 8`` the brute-force operators (finite-difference
    Jacobian of the Laplace map; entrywise Gaussian integrals of the backward map), each
    eigenvalue matched by its space. Infinite eigenvalues are not checked."""
    with mpmath.workdps(digits + 15):
        return _verify_spectrum(spec, batch_sizes, digits)


def _verify_spectrum(spec, batch_sizes, digits: int) -> list[Check]:
    from .spectrum import analyze_spectrum

    deriv, act = spec.derivation, spec.activation
    checks: list[Check] = []
    open_ = [q.name for q in deriv.quantities if q.expr is None]
    for Bv in progress(list(batch_sizes), "spectrum verification"):
        refs, add = _reference_checks(deriv, Bv, digits, checks)

        for name in refs:
            q = deriv[name]
            if q.expr is not None:
                value = q.expr.evalf(digits + 10, subs={B_SYM: Bv})
                add(name, "SymPy evalf of the closed form", mpmath.mpf(value), digits)
        if open_:
            (fast,) = analyze_spectrum(spec, [Bv], min(digits, FLOAT_DIGITS))
            for e in fast.entries:
                if e.name in open_ and e.name in refs:
                    add(e.name, "fast route: " + e.number.route, e.number.value,
                        min(digits, FLOAT_DIGITS))
            checks.extend(_gegenbauer_checks(act, deriv, Bv, digits, refs))
        checks.extend(_cartesian_checks(act, deriv, Bv, digits, refs))
        checks.extend(_brute_force_spectrum_checks(spec, Bv, digits, refs))
    return checks


def _brute_force_spectrum_checks(spec, Bv, digits, refs) -> list[Check]:
    """Brute-force operators of :mod:`.bruteforce` (positive-homogeneous phi, small B): every
    eigenvalue read off per space (:func:`~.bruteforce.operator_spectrum`)."""
    hom = spec.activation.homogeneous
    if hom is None or not hom.alpha > 0 or Bv > BRUTE_FORCE_MAX_B:
        return []
    from . import bruteforce

    routes = {"forward": "brute-force Jacobian of the Laplace map",
              "backward": "brute-force backward operator (entrywise Gaussian integrals)"}
    out = []
    for direction, route in routes.items():
        entries = [e for e in spec.direction(direction) if e.name in refs]
        if not entries:
            continue
        if direction == "backward" and not hom.alpha > BACKWARD_MIN_ALPHA:
            continue
        found = {es.space: es for es in bruteforce.spectrum(spec.activation, Bv, direction)}
        for e in entries:
            ref = refs[e.name]
            es = found.get(e.space)
            value = mpmath.mpf(es.eigenvalue) if es is not None else None
            out.append(Check(e.name, Bv, route, value, ref.value, ref.route, ref.digits,
                             min(digits, BRUTE_FORCE_DIGITS),
                             "" if es is not None else f"no {e.space} space found"))
    return out


# -- batchnorm with eps > 0 ---------------------------------------------------------------------

#: Largest batch size at which the network Monte Carlo runs in ``verify_regularised`` (its
#: cost and memory grow like ``B^2`` per sample).
MONTE_CARLO_MAX_B = 16

#: Monte Carlo agreement is checked to the digits of this many standard errors.
MONTE_CARLO_SIGMAS = 4


def _monte_carlo_check(name, Bv, num, mean, stderr, route) -> Check:
    """``num`` against a Monte Carlo estimate: required (and confirmed) digits are those of
    ``MONTE_CARLO_SIGMAS`` standard errors, so the check passes iff the difference is
    within that many standard errors."""
    ref_digits = digits_from_error(mean, MONTE_CARLO_SIGMAS * stderr) if stderr else 0.0
    return Check(name, Bv, f"{num.route} vs {route}", num.value, mean, route, ref_digits,
                 ref_digits)


def verify_regularised(rd, batch_sizes, epsilon, sigma_w="1", digits: int = 20,
                       samples: int = 100_000) -> tuple[list[Check], list[str]]:
    """Every ``eps > 0`` number against independent routes, and notes on what did not run.

    * positive-homogeneous ``phi``: the closed forms (Tricomi U, their own root of the closed
      scale equation) against the mpmath radial quadrature of the closed sphere moments, at
      ``digits``; the float64 route against the same reference;
    * any ``phi``: the float64 route (or the closed forms) against Monte Carlo of the
      network's own maps (fixed point by common-random-number root finding, forward Jacobian
      by differences, backward map by the exact layer Jacobian; ``B <= MONTE_CARLO_MAX_B``),
      to the digits of ``MONTE_CARLO_SIGMAS`` standard errors.
    A dead signal must be dead on both routes."""
    from . import montecarlo
    from .epsilon import (CLOSED_MAX_B, ROUTE_FLOAT, ROUTE_MP, NoFixedPoint, _mp_numbers,
                          analyze_regularised, check_parameters)

    eps, sw = check_parameters(epsilon, sigma_w)
    sizes = check_batch_sizes(batch_sizes, finite=True)
    act = rd.activation
    homogeneous = act.homogeneous is not None and rd.scale_map.expr is not None
    checks: list[Check] = []
    notes: list[str] = []
    names = ["s_star", "q_star", "c_star"] + [e.name for e in rd.entries
                                             if e.space != "kernel" and not e.note]
    for Bv in progress(sizes, "eps > 0 verification"):
        (main,) = analyze_regularised(rd, [Bv], eps, sw, digits)
        mc_fp = None
        if Bv <= MONTE_CARLO_MAX_B:
            mc_fp = montecarlo.network_fixed_point(act, Bv, float(eps), float(sw),
                                                   samples=samples, seed=Bv)
        if main.regime != "fixed point":
            notes.append(f"B={Bv}: no nonzero fixed point ({main.note})"
                         + ("" if mc_fp is None and Bv <= MONTE_CARLO_MAX_B else
                            "; Monte Carlo not run" if Bv > MONTE_CARLO_MAX_B else
                            "; FAIL: Monte Carlo finds one"))
            if mc_fp is not None:
                checks.append(Check("s_star", Bv, "no nonzero fixed point", None,
                                    mc_fp.s_star.mean, "Monte Carlo of the network", 0.0, 1.0,
                                    "Monte Carlo finds a fixed point"))
            continue
        if homogeneous:
            try:
                with mpmath.workdps(digits + 25):
                    ref, ref_err = _mp_numbers(rd, Bv, eps, sw, digits)
            except NoFixedPoint as err:
                checks.append(Check("s_star", Bv, main.numbers["s_star"].route,
                                    main.numbers["s_star"].value, None, ROUTE_MP, 0.0, digits,
                                    str(err)))
                continue
            fast = None
            if main.numbers["s_star"].route != ROUTE_FLOAT:
                (fast,) = analyze_regularised(rd, [Bv], eps, sw, FLOAT_DIGITS, route="float")
            for name in names:
                rd_digits = min(digits_from_error(ref[name], ref_err[name]), digits + 5)
                num = main.numbers[name]
                checks.append(Check(name, Bv, f"{num.route} vs {ROUTE_MP}", num.value,
                                    ref[name], ROUTE_MP, rd_digits, min(digits, num.digits)))
                if fast is not None:
                    fnum = fast.numbers[name]
                    checks.append(Check(name, Bv, f"{fnum.route} vs {ROUTE_MP}", fnum.value,
                                        ref[name], ROUTE_MP, rd_digits,
                                        min(FLOAT_DIGITS, fnum.digits)))
            if Bv > CLOSED_MAX_B:
                notes.append(f"B={Bv}: closed forms not evaluated above B = {CLOSED_MAX_B} "
                             "(Tricomi series too slow); radial quadrature checked instead")
        if mc_fp is None:
            if Bv <= MONTE_CARLO_MAX_B:
                checks.append(Check("s_star", Bv, main.numbers["s_star"].route,
                                    main.numbers["s_star"].value, None,
                                    "Monte Carlo of the network", 0.0, 1.0,
                                    "Monte Carlo finds no fixed point"))
            else:
                notes.append(f"B={Bv}: Monte Carlo of the network not run above B = "
                             f"{MONTE_CARLO_MAX_B}")
            continue
        mc_route = f"Monte Carlo of the network ({samples:,} samples)"
        for name in ("s_star", "q_star", "c_star"):
            est = getattr(mc_fp, name)
            checks.append(_monte_carlo_check(name, Bv, main.numbers[name], est.mean, est.stderr,
                                             mc_route))
        for direction in ("forward", "backward"):
            blocks = montecarlo.network_spectrum(act, Bv, direction, samples=samples,
                                                 seed=Bv + 1, epsilon=float(eps),
                                                 sigma_w=float(sw))
            for blk in blocks:
                name = f"{direction}_{blk.space}"
                if name not in main.numbers:
                    continue
                est = blk.eigenvalues[blk.space]
                checks.append(_monte_carlo_check(name, Bv, main.numbers[name], est.mean,
                                                 est.stderr, mc_route))
    return checks, notes
