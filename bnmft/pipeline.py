"""The driver: activation -> derivation -> numbers -> generated modules -> verification.

Each stage takes the previous stage's object and returns its own (in the manner of a form
compiler): :func:`derivation` gives a :class:`~bnmft.derive.Derivation`, :func:`analyze` a
list of :class:`~bnmft.numerics.Analysis`, :func:`generate` source texts, :func:`verify`
:class:`~bnmft.numerics.Check` objects, and :func:`report` runs them all into a
:class:`Report`. The command line only parses arguments and prints these objects.

Every function accepts an activation spec (``"relu"``, ``"tanh(2*x) + 0.1"``), an
:class:`~bnmft.derive.Activation` or a :class:`~bnmft.derive.Derivation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bnmft.derive import Activation, Derivation, derive
from bnmft.derive import parse_activation as activation


def derivation(act, gamma=None, beta=None) -> Derivation:
    """Stage 1-2: parse/analyse the activation (``phi(gamma x + beta)`` if given) and derive
    every quantity."""
    if isinstance(act, Derivation):
        return act
    if not isinstance(act, Activation):
        act = activation(act, gamma=gamma, beta=beta)
    return derive(act)


def _activation_of(act, gamma=None, beta=None) -> Activation:
    """The :class:`Activation` of a spec string, an Activation or any derived object."""
    if isinstance(act, Activation):
        return act
    if hasattr(act, "activation"):
        return act.activation
    return activation(act, gamma=gamma, beta=beta)


def regularised_derivation(act, gamma=None, beta=None):
    """Stage 1-2 for batchnorm with ``eps > 0``: the fixed-point map and both spectra as a
    :class:`~bnmft.derive.RegularisedDerivation` (radial moments; closed forms in Tricomi U
    for positive-homogeneous ``phi``)."""
    from bnmft.derive import RegularisedDerivation, derive_regularised

    if isinstance(act, RegularisedDerivation):
        return act
    return derive_regularised(_activation_of(act, gamma, beta))


def analyze(act, batch_sizes, digits: int = 16, epsilon="0", sigma_w="1"):
    """Stage 3: every quantity at each batch size, to ``digits`` significant digits.

    ``epsilon`` (batchnorm's eps, >= 0) and ``sigma_w`` (weights ``N(0, sigma_w^2/N)``, > 0)
    are numbers or exact expressions. At ``eps = 0`` the maps are scale invariant: every
    value is that of ``sigma_w = 1`` except ``q*``, which scales by ``sigma_w^2``
    (:class:`~bnmft.numerics.Analysis` objects). At ``eps > 0`` the fixed point depends on
    ``eps / sigma_w^2`` (:class:`~bnmft.numerics.RegularisedAnalysis` objects, which also
    carry ``s_star``, both spectra and the regime)."""
    from bnmft.numerics import analyze as _analyze
    from bnmft.numerics import analyze_regularised, check_parameters, scale_number

    eps, sw = check_parameters(epsilon, sigma_w)
    if not eps.is_zero:
        from bnmft.derive import InvalidInput, check_batch_sizes

        if any(b == math.inf for b in batch_sizes):
            raise InvalidInput("eps > 0 needs finite batch sizes (the limit B -> oo is not "
                               "derived for eps > 0)")
        sizes = check_batch_sizes(batch_sizes, finite=True)
        return analyze_regularised(regularised_derivation(act), sizes, eps, sw, digits)
    results = _analyze(derivation(act), batch_sizes, digits)
    if sw != 1:
        for an in results:
            an.numbers["q_star"] = scale_number(an.numbers["q_star"], sw**2, "sigma_w^2")
    return results


def _checkable() -> tuple[str, ...]:
    """The languages a closed-form module is verified in: numpy, and C where a C compiler is
    found (so that a module states the same record whichever languages are generated; without
    a compiler the C text is written unverified and its header says numpy only)."""
    from bnmft.codegen import CodegenError
    from bnmft.codegen.jit import find_compiler

    try:
        find_compiler()
    except CodegenError:
        return ("numpy",)
    return ("numpy", "c")


def uses_quadrature(deriv) -> bool:
    """True if ``deriv``'s generated code is the sphere-quadrature module (no closed forms
    for a positive-homogeneous phi), False for the closed-form modules."""
    return not (deriv.has_closed_forms and deriv.activation.homogeneous is not None)


def generate(act, langs=("numpy", "c"), module: str | None = None, plan=None,
             epsilon: bool = False) -> dict[str, dict[str, str]]:
    """Stage 4: ``{lang: {filename: source}}`` of the generated modules: the closed forms, or,
    for an activation without them, sphere quadrature + moment forms
    (:mod:`bnmft.codegen.quadrature`; ``plan``, its panel width and verification against the
    mpmath route, is computed unless given: the verification takes a minute). Closed-form
    modules are verified against bnmft's mpmath evaluation of the closed forms at B = 4 ...
    10^6 (:func:`bnmft.codegen.closed_forms.verify_closed`; the C kernels compiled), which
    their headers state. ``epsilon``: the modules also get the functions of ``(B, eps,
    sigma_w)`` for batchnorm with ``eps > 0`` (:mod:`bnmft.codegen.epsilon`, verified
    against :func:`bnmft.numerics.epsilon.analyze_regularised`)."""
    from bnmft.codegen import generate as _generate

    deriv = derivation(act)
    module = module or module_name(deriv.activation.name)
    if epsilon:
        from bnmft.codegen.epsilon import epsilon_forms, render_numpy, route_of

        # refuse before any verification
        render_numpy(deriv.activation, epsilon_forms(
            deriv.activation, route_of(deriv.activation, uses_quadrature(deriv))))
    if not uses_quadrature(deriv):
        from bnmft.codegen.closed_forms import verify_closed

        record = verify_closed(deriv, module, _checkable())
        out = {lang: _generate(deriv, lang=lang, module=module, verified=record)
               for lang in langs}
    else:
        from bnmft.codegen.quadrature import generate_quadrature, plan_for

        plan = plan or plan_for(deriv.activation, module)
        out = {lang: generate_quadrature(deriv.activation, lang=lang, module=module, plan=plan)
               for lang in langs}
    if epsilon:
        from bnmft.codegen.epsilon import with_epsilon

        out = {lang: with_epsilon(deriv.activation, src, lang, module,
                                  uses_quadrature(deriv))[0] for lang, src in out.items()}
    return out


def verify(act, batch_sizes=None, digits: int = 30):
    """Stage 5: every route of every quantity against independent mpmath references."""
    from bnmft.numerics import DEFAULT_BATCH_SIZES, verify as _verify

    sizes = list(DEFAULT_BATCH_SIZES) if batch_sizes is None else batch_sizes
    return _verify(derivation(act), sizes, digits)


def verify_rigorous(act, batch_sizes=(4, 8, 32), digits: int = 20):
    """Stage 5, certified: two enclosures in Arb ball arithmetic of every quantity (eps = 0)
    at each finite batch size -- the closed form and rigorous sphere integrals
    (positive-homogeneous phi), or two rigorous integral routes (smooth phi) -- as
    :class:`~bnmft.numerics.rigorous.RigorousCheck` objects (overlap, certified digits)."""
    from bnmft.derive import InvalidInput, check_batch_sizes
    from bnmft.limits import MAX_DIGITS
    from bnmft.numerics.rigorous import check_limits
    from bnmft.numerics.rigorous import verify_rigorous as _verify_rigorous
    from bnmft.progress import progress

    if isinstance(digits, bool) or not isinstance(digits, int) or not 1 <= digits <= MAX_DIGITS:
        raise InvalidInput(f"digits must be an integer from 1 to {MAX_DIGITS} (got {digits!r})")
    sizes = check_batch_sizes(batch_sizes, finite=True)
    deriv = derivation(act)
    check_limits(deriv.activation, sizes)
    out = []
    for B in progress(sizes, "rigorous enclosures"):
        out.extend(_verify_rigorous(deriv, [B], digits))
    return out


def spectrum_derivation(act, gamma=None, beta=None, **parameters):
    """Stage 1-2 for spectra: the forward and backward spectra at the BSB1 point as a
    :class:`~bnmft.derive.Spectrum` (``act`` may also be a Derivation or a Spectrum)."""
    from bnmft.derive import Spectrum, derive_spectrum

    if isinstance(act, Spectrum):
        return act
    return derive_spectrum(_activation_of(act, gamma, beta), **parameters)


def spectrum(act, batch_sizes, digits: int = 16, epsilon="0", sigma_w="1", **parameters):
    """Stage 3 for spectra: every forward and backward eigenvalue (space, dimension, number)
    at each finite batch size (:class:`~bnmft.numerics.SpectrumAnalysis` objects). With
    ``epsilon > 0`` the maps of the regularised network at its fixed point (``sigma_w``
    matters through ``eps/sigma_w^2``); at ``eps = 0`` neither depends on ``sigma_w``."""
    from bnmft.numerics import analyze_regularised, analyze_spectrum, check_parameters

    eps, sw = check_parameters(epsilon, sigma_w)
    if not eps.is_zero:
        rd = regularised_derivation(act)
        return [res.spectrum(rd) for res in
                analyze_regularised(rd, list(batch_sizes), eps, sw, digits)]
    return analyze_spectrum(spectrum_derivation(act, **parameters), list(batch_sizes), digits)


def verify_spectrum(act, batch_sizes=(6, 8, 32), digits: int = 20, epsilon="0", sigma_w="1",
                    **parameters):
    """Stage 5 for spectra: every eigenvalue against independent references (``eps > 0``:
    :func:`verify_regularised`, whose notes are dropped here)."""
    from bnmft.numerics import check_parameters
    from bnmft.numerics import verify_spectrum as _verify

    eps, _ = check_parameters(epsilon, sigma_w)
    if not eps.is_zero:
        return verify_regularised(act, batch_sizes, digits, epsilon, sigma_w)[0]
    return _verify(spectrum_derivation(act, **parameters), list(batch_sizes), digits)


def verify_regularised(act, batch_sizes=(6, 8, 32), digits: int = 20, epsilon="1/100",
                       sigma_w="1"):
    """Stage 5 for ``eps > 0``: ``(checks, notes)``, every number against independent routes
    (closed forms vs radial quadrature for positive-homogeneous phi; Monte Carlo of the
    network for any phi at small B)."""
    from bnmft.numerics import verify_regularised as _verify

    return _verify(regularised_derivation(act), list(batch_sizes), epsilon, sigma_w, digits)


#: Batch sizes and digits at which ``export`` verifies the generated modules.
EXPORT_VERIFY_BATCH_SIZES = (6, 32, 1000)
EXPORT_VERIFY_DIGITS = 16


def export(acts, out, package: str = "bnmft_generated", epsilon: bool = False):
    """Stage 4-5 for code: a standalone pip-installable package of the generated numpy and C
    modules of ``acts`` in folder ``out`` (written as a whole), with the digits each generated
    numpy function was verified to against the mpmath references (least over
    :data:`EXPORT_VERIFY_BATCH_SIZES`; for a family with symbolic parameters, over the grid
    of :func:`~bnmft.codegen.closed_forms.verify_closed`). ``epsilon``: every module also gets
    the functions of ``(B, eps, sigma_w)`` (:mod:`bnmft.codegen.epsilon`, verified against
    :func:`bnmft.numerics.epsilon.analyze_regularised`). Returns the folder."""
    import dataclasses

    from bnmft.codegen.export import ExportItem, render_package, write_package

    items = []
    for act in acts:
        deriv = derivation(act)
        module = module_name(deriv.activation.name)
        if uses_quadrature(deriv):
            from bnmft.codegen.quadrature import plan_for

            plan = plan_for(deriv.activation, module)
            sources = generate(deriv, ("numpy", "c"), module, plan)
            items.append(ExportItem(deriv, module, dict(plan.verified), sources, plan))
            continue
        from bnmft.codegen.closed_forms import family_parameters, verify_closed

        if family_parameters(deriv):
            # parameters as arguments: verified on the family grid (numpy and C) instead
            items.append(ExportItem(deriv, module, dict(verify_closed(deriv, module,
                                                                      _checkable()).digits)))
            continue
        checks = verify(deriv, list(EXPORT_VERIFY_BATCH_SIZES), EXPORT_VERIFY_DIGITS)
        digits: dict = {}
        for ch in checks:
            if ch.route == "generated numpy module":
                digits[ch.quantity] = min(digits.get(ch.quantity, math.inf), ch.digits)
        items.append(ExportItem(deriv, module, digits))
    if epsilon:
        items = [dataclasses.replace(item, epsilon=True) for item in items]
    files = render_package(items, package, verify_batch_sizes=EXPORT_VERIFY_BATCH_SIZES)
    return write_package(files, out)


def epsilon_scan(act, batch_sizes=(8,), sigma_w="1"):
    """Where, as batchnorm's ``eps`` grows, the nonzero fixed point disappears
    (``eps_signal``) and where the gradient rate falls through 1 (``eps_gradient``), per
    batch size (:class:`~bnmft.numerics.EpsilonScan` objects; paper Fig 4c,d)."""
    from bnmft.derive import check_batch_sizes
    from bnmft.numerics import epsilon_scan as _scan

    rd = regularised_derivation(act)
    return [_scan(rd, b, sigma_w) for b in check_batch_sizes(batch_sizes, finite=True)]


def vanilla(act, sigma_w="1", sigma_b="0", digits: int = 16, q0="1"):
    """The vanilla baseline (no batchnorm): derive the length and correlation maps of ``act``
    (``bnmft.derive.derive_vanilla``) and find ``q*``, ``c*``, ``chi_1``, ``chi_q``,
    ``chi_c``, ``xi_q``, ``xi_c`` and the phase for weights ``N(0, sigma_w^2/N)`` and biases
    ``N(0, sigma_b^2)`` (``bnmft.numerics.analyze_vanilla``; ``q*`` is reached from ``q0``).

    ``sigma_w``, ``sigma_b``, ``q0`` are numbers or exact expressions (``"sqrt(2)"``); bad
    values raise :class:`~bnmft.derive.ParameterError`.
    """
    from bnmft.derive import derive_vanilla, vanilla_parameter
    from bnmft.numerics import analyze_vanilla

    if isinstance(act, Derivation):
        act = act.activation
    if not isinstance(act, Activation):
        act = activation(act)
    sw = vanilla_parameter(sigma_w, "sigma_w", positive=True)
    sb = vanilla_parameter(sigma_b, "sigma_b", positive=False)
    start = vanilla_parameter(q0, "q0", positive=True)
    return analyze_vanilla(derive_vanilla(act), sw, sb, digits, start)


def gp(act, X, y, Xt, batch_size=None, depth=1, epsilon="0", sigma_w="1",
       batchnorm: bool = True, sigma_b="0", jitter: float | None = None, yt=None,
       tol: float | None = None, workers: int = 1, scheduler=None):
    """GP regression with the NNGP prior of a deep batchnorm network (or, with
    ``batchnorm=False``, of the vanilla network): the posterior mean and latent variance at
    ``Xt`` given labels ``y`` at ``X`` (a :class:`~bnmft.numerics.gp.GPResult`; a list of
    them, one per depth, if ``depth`` is a list, computed in one pass of ``max(depth)``
    layers).

    The prior is the depth-``depth`` kernel of :func:`bnmft.numerics.kernel.kernel` on the
    stacked inputs ``[X; Xt]`` (``tol``: the accuracy per entry asked of the deepest kernel,
    each layer to ``tol / max(depth)``, default that of ``kernel``): consecutive rows of ``X`` form the training batches and consecutive rows
    of ``Xt`` the test batches (of size ``batch_size``, which must divide both ``n`` and
    ``n_test``). A test point's representation in a batchnorm network depends on its
    batch-mates, so the kernel between a training batch and a test batch is the cross-batch
    block, and a short test batch is refused rather than padded with made-up points. The
    posterior (:func:`bnmft.numerics.gp.posterior`) uses a relative diagonal jitter
    (default ``1e-10``, raised by factors of 10 only if Cholesky fails; the value used is
    reported), and its digits account for the linear algebra (Cholesky vs LU) and for the
    kernel's own error (a perturbation by its claimed bound). ``yt`` (test labels) adds the
    MSE and, for ``k >= 2`` label columns, the argmax accuracy. ``workers`` / ``scheduler``:
    the block pairs of each layer in local processes or on a Dask cluster (as
    :func:`kernel`). Bad input raises :class:`~bnmft.derive.InvalidInput`.
    """
    import numpy as np

    from bnmft.derive import InvalidInput, vanilla_parameter
    from bnmft.derive.errors import check_batch_size
    from bnmft.numerics import check_parameters
    from bnmft.numerics.gp import (DEFAULT_JITTER, MAX_JITTER, check_data, kernels_by_depth,
                                   posterior, summarise)

    act = _activation_of(act)
    several = isinstance(depth, (list, tuple))
    depths = list(depth) if several else [depth]
    if not depths:
        raise InvalidInput("no depth given")
    for L in depths:
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
            raise InvalidInput(f"depth must be an integer >= 1 (got {L!r})")
    jitter = DEFAULT_JITTER if jitter is None else jitter
    if (isinstance(jitter, bool) or not isinstance(jitter, (int, float))
            or not 0 <= jitter <= MAX_JITTER):
        raise InvalidInput(f"jitter must be a number from 0 to {MAX_JITTER:g}, relative to the "
                           f"mean prior variance (got {jitter!r})")
    if batchnorm:
        if batch_size is None:
            raise InvalidInput("a batchnorm kernel needs a batch size")
        batch_size = check_batch_size(batch_size, finite=True)
        if str(sigma_b) not in ("0", "0.0"):
            raise InvalidInput("sigma_b needs batchnorm=False (a bias before batchnorm drops "
                               "out)")
        eps, sw = check_parameters(epsilon, sigma_w)
        options = {"epsilon": float(eps), "sigma_w": float(sw), "batchnorm": True}
    else:
        if str(epsilon) not in ("0", "0.0"):
            raise InvalidInput("epsilon is batchnorm's eps: it has no meaning without "
                               "batchnorm")
        eps = None
        sw = vanilla_parameter(sigma_w, "sigma_w", positive=True)
        sb = vanilla_parameter(sigma_b, "sigma_b", positive=False)
        options = {"sigma_w": float(sw), "sigma_b": float(sb), "batchnorm": False}
        batch_size = None
    if tol is not None:
        options["tol"] = tol
    options.update(workers=workers, scheduler=scheduler)
    X, y, Xt, yt = check_data(X, y, Xt, yt, batch_size, zero_variance=batchnorm)
    n = len(X)
    kernels = kernels_by_depth(act, np.vstack([X, Xt]), batch_size, depths, **options)
    results = []
    for L in depths:
        kr = kernels[int(L)]
        K = kr.matrix
        settings = {"activation": act.name, "batchnorm": bool(batchnorm), "depth": int(L),
                    "batch_size": batch_size, "epsilon": None if eps is None else str(epsilon),
                    "sigma_w": str(sigma_w),
                    "sigma_b": None if batchnorm else str(sigma_b),
                    "n_train": n, "n_test": len(Xt), "outputs": 1 if y.ndim == 1 else y.shape[1],
                    "kernel_route": kr.route, "kernel_accuracy": kr.accuracy}
        post = posterior(K[:n, :n], K[n:, :n], np.diag(K)[n:].copy(), y, float(jitter),
                         kernel_accuracy=kr.accuracy)
        results.append(summarise(post, settings, yt))
    return results if several else results[0]


def transition(act="alpha_relu", batch_sizes=(8,), digits: int = 16, bracket=None,
               vary: str | None = None, gamma=None, beta=None):
    """Where the BSB1 point stops attracting (``max(lambda_L, lambda_M) = 1``), per batch size.

    Without ``vary``: ``alpha_transition(B)`` of ``alpha``-ReLU from the derivation with
    symbolic ``alpha`` (``act`` must be ``"alpha_relu"``). With ``vary="gamma"`` or ``"beta"``:
    the transition in that parameter of ``phi(gamma x + beta)`` for any ``phi`` (the other
    one fixed by ``gamma``/``beta``). Returns ``bnmft.numerics.transition.Transition`` objects;
    a bracket without a certified sign change raises ``NoSignChange``.
    """
    from bnmft import numerics as tr
    from bnmft.derive import symbolic_activation

    sizes = [int(b) for b in batch_sizes]
    if vary is None:
        name = act if isinstance(act, str) else getattr(act, "name", "")
        if name.split(":")[0].split(" ")[0] != "alpha_relu":
            raise ValueError("the alpha transition is defined for alpha_relu; use vary='gamma' "
                             "or 'beta' for other activations")
        if gamma is not None or beta is not None:
            raise ValueError("gamma/beta cannot be combined with the symbolic alpha derivation")
        deriv = derive(symbolic_activation("alpha_relu"))
        return tr.alpha_transitions(deriv, sizes, digits, bracket or tr.ALPHA_BRACKET)
    if vary not in ("gamma", "beta"):
        raise ValueError(f"vary must be 'gamma' or 'beta' (got {vary!r})")
    spec = act.name if isinstance(act, Activation) else act

    def make(value):
        if vary == "gamma":
            return derive(activation(spec, gamma=value, beta=beta))
        return derive(activation(spec, gamma=gamma, beta=value))

    return tr.parameter_transitions(make, vary, sizes, digits,
                                    bracket or tr.PARAMETER_BRACKETS[vary])


def transition_structure(act, batch_size: int, parameter: str | None = None, value=None,
                         gamma=None, beta=None, **options):
    """The block structure the iterated covariance map settles into at one parameter value
    (``bnmft.numerics.transition.covariance_structure``): ``alpha_relu`` at ``alpha = value``
    (``parameter`` ``"alpha"``), or ``phi(gamma x + beta)`` with ``parameter`` set to ``value``."""
    from bnmft.numerics import covariance_structure

    spec = act.name if isinstance(act, Activation) else act
    if parameter == "alpha":
        phi = activation(f"alpha_relu:{value}")
    elif parameter == "gamma":
        phi = activation(spec, gamma=value, beta=beta)
    elif parameter == "beta":
        phi = activation(spec, gamma=gamma, beta=value)
    else:
        phi = activation(spec, gamma=gamma, beta=beta) if not isinstance(act, Activation) else act
    return covariance_structure(phi, int(batch_size), **options)


#: Most batch sizes a report verifies (verification costs seconds per batch size).
REPORT_VERIFY_MAX = 6


def verification_sample(batch_sizes) -> list[int]:
    """The finite batch sizes a report verifies: all of them up to :data:`REPORT_VERIFY_MAX`,
    else the smallest, the largest and evenly spaced ones between (in log scale)."""
    finite = sorted({int(b) for b in batch_sizes if b != math.inf})
    if len(finite) <= REPORT_VERIFY_MAX:
        return finite
    k = REPORT_VERIFY_MAX
    lo, hi = math.log(finite[0]), math.log(finite[-1])
    picks = {finite[0], finite[-1]}
    for i in range(1, k - 1):
        target = math.exp(lo + (hi - lo) * i / (k - 1))
        picks.add(min(finite, key=lambda b: abs(math.log(b) - math.log(target))))
    return sorted(picks)


@dataclass
class Report:
    """Everything one run produces for one activation."""

    derivation: Derivation
    analyses: list
    checks: list
    verified_sizes: list[int]
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    digits: int = 16
    verify_digits: int = 20

    @property
    def activation(self) -> Activation:
        return self.derivation.activation

    @property
    def verified(self) -> bool:
        return all(c.ok for c in self.checks)


def report(act, batch_sizes, digits: int = 16, verify_digits: int = 20) -> Report:
    """All stages for one activation: derivation, numbers at ``batch_sizes``, generated
    modules (where closed forms exist), verification at :func:`verification_sample`."""
    from bnmft.codegen import CodegenError
    from bnmft.numerics import unavailable_routes

    deriv = derivation(act)
    analyses = analyze(deriv, batch_sizes, digits)
    sample = verification_sample(batch_sizes)
    checks = verify(deriv, sample, verify_digits) if sample else []
    sources: dict = {}
    unavailable = dict(unavailable_routes(deriv))
    if deriv.activation.homogeneous is not None and deriv.has_closed_forms:
        try:
            sources = generate(deriv, ("numpy", "c"))  # verified once for both
        except CodegenError as err:
            for lang in ("numpy", "c"):
                unavailable[f"generated {lang} module"] = str(err)
    return Report(deriv, analyses, checks, sample, sources, unavailable, digits, verify_digits)


def module_name(name: str) -> str:
    """A Python identifier for generated files from an activation's name."""
    keep = [ch if ch.isalnum() else "_" for ch in name]
    slug = "".join(keep).strip("_")
    while "__" in slug:
        slug = slug.replace("__", "_")
    if not slug or slug[0].isdigit():
        slug = "act_" + slug
    return slug[:48]


def write_report_files(rep: Report, out: Path, text: str, latex: str) -> list[Path]:
    """Write the generated sources, ``formulas.tex`` and ``report.md`` into ``out``
    (each file atomically); returns the paths written."""
    from bnmft.codegen import write_sources
    from bnmft.codegen.files import atomic_write_text

    paths: list[Path] = []
    for _lang, files in rep.sources.items():
        paths += write_sources(files, out)
    paths.append(atomic_write_text(out / "formulas.tex", latex + "\n"))
    report_path = out / "report.md"
    listing = "".join(f"  {p}\n" for p in [*paths, report_path])
    atomic_write_text(report_path, text + listing)
    paths.append(report_path)
    return paths


def _float_parameter(text, what: str, positive: bool) -> float:
    from bnmft.derive import vanilla_parameter

    return float(vanilla_parameter(text, what, positive))


def simulate(act, batch_size: int, width: int = 512, depth: int = 30, samples: int = 8,
             seed: int = 0, epsilon="0", sigma_w="1", gamma=None, beta=None,
             backend: str = "numpy", burn_in: int | None = None, theory: bool = True,
             progress=None):
    """Sampled finite networks against the theory (``bnmft.numerics.simulate``): per-layer
    batch covariance (``q``, ``c``, distance to BSB1), forward rates, gradient norms and the
    gradient explosion rate over ``samples`` networks of width ``width`` and depth ``depth``,
    each measurement with the theory's value at the same ``eps``, ``sigma_w`` (from
    :func:`analyze`: ``gradient_rate``, ``lambda_L``, ``lambda_M``, ``q_star``, ``c_star``).
    Returns a :class:`~bnmft.numerics.simulate.Simulation`; its ``theory_notes`` say where
    the theory has no value (no nonzero fixed point)."""
    from bnmft.numerics import check_parameters
    from bnmft.numerics.simulate import check_network
    from bnmft.numerics.simulate import simulate as _simulate

    eps, sw = check_parameters(epsilon, sigma_w)
    check_network(batch_size, width, depth, samples, backend, float(eps), float(sw))
    act = _activation_of(act, gamma, beta)
    sim = _simulate(act, batch_size, width, depth, samples, seed, float(eps), float(sw),
                    backend, burn_in, progress)
    if theory:
        an = analyze(act, [int(batch_size)], 12, eps, sw)[0]
        if getattr(an, "regime", "fixed point") != "fixed point":
            sim.theory_notes.append(f"theory: {an.regime} at eps = {eps}, sigma_w = {sw}")
        keys = {"gradient_rate": "gradient_rate", "forward_rate_L": "lambda_L",
                "forward_rate_M": "lambda_M", "q_star": "q_star", "c_star": "c_star"}
        for name, m in sim.measurements().items():
            num = an.numbers.get(keys[name])
            if num is not None and num.value is not None and num.digits >= 6:
                m.theory = float(num.value)
                m.theory_number = num
    return sim


#: Parameters ``tune`` can vary.
TUNABLE = ("gamma", "beta", "eps")


def tune(act, target_depth=None, vary: str = "gamma", batch_size: int = 32, sigma_w="1",
         epsilon="0", gamma=None, beta=None, target_rate=None):
    """The value of ``vary`` (``gamma`` or ``beta`` of ``phi(gamma x + beta)``, or batchnorm's
    ``eps``) at which the predicted maximum trainable depth ``16 xi`` equals ``target_depth``
    (or the gradient rate equals ``target_rate``), by a bracket scan and ``brentq`` on the
    theory's gradient rate (``bnmft.numerics.tune``; eps > 0: the regularised route).

    Returns ``(Tuned, check)``: the value with its digits, and :func:`analyze` at the value as
    printed to those digits (``check.numbers["max_trainable_depth"]``). Raises
    ``bnmft.numerics.tune.Unreachable`` (an :class:`InvalidInput`) if no value in the range
    reaches the target."""
    from bnmft.derive import InvalidInput
    from bnmft.derive.errors import check_batch_size
    from bnmft.numerics import check_parameters
    from bnmft.numerics.precision import decimal_string
    from bnmft.numerics.tune import find_value, target_from_depth

    if vary not in TUNABLE:
        raise InvalidInput(f"--vary must be gamma, beta or eps (got {vary!r})")
    if (target_depth is None) == (target_rate is None):
        raise InvalidInput("give exactly one of a target depth and a target rate")
    B = check_batch_size(batch_size, finite=True)
    eps, sw = check_parameters(epsilon, sigma_w)
    if vary == "eps" and not eps.is_zero:
        raise InvalidInput("--epsilon cannot be fixed while eps is varied")
    spec = act.name if isinstance(act, Activation) else act
    base = _activation_of(act, gamma, beta) if not isinstance(act, Activation) else act
    if vary in ("gamma", "beta") and isinstance(act, Activation) and (gamma or beta):
        raise InvalidInput("give the activation as a spec string to combine it with gamma/beta")
    target = target_from_depth(float(target_depth)) if target_rate is None else float(target_rate)

    def at(v_text):
        if vary == "gamma":
            a, e = activation(spec, gamma=v_text, beta=beta), eps
        elif vary == "beta":
            a, e = activation(spec, gamma=gamma, beta=v_text), eps
        else:
            a, e = base, v_text
        return analyze(a, [B], 12, e, sw)[0]

    def rate(v):
        if vary == "gamma" and v == 0:
            return None
        from bnmft.derive.activation import NoBSB1Point

        try:
            an = at(repr(v))
        except NoBSB1Point:  # phi vanishes on the sphere there: no rate
            return None
        if getattr(an, "regime", "fixed point") != "fixed point":
            return None
        return an.numbers.get("gradient_rate")

    def describe(r):
        if vary == "eps" or not eps.is_zero:
            return ""
        lin = (B - 2) / (B - 3)
        if r <= lin:
            return (f"no phi reaches it: the linear phi has the least rate (B-2)/(B-3) = "
                    f"{lin:.6g} at B = {B}, 16 xi = {16 / math.log(lin):.6g}")
        return ""

    res = find_value(rate, vary, target, float(sw) ** 2 if vary == "eps" else 1.0, describe)
    res.batch_size = B
    shown = decimal_string(res.value, max(1, math.floor(res.digits)))
    res.text = shown
    return res, at(shown)


def width_bias(act, batch_size: int, widths=(64, 128, 256, 512), depth: int = 30,
               samples: int = 16, seed: int = 0, epsilon="0", sigma_w="1",
               backend: str = "numpy") -> dict:
    """The finite-width bias of every simulated measurement: ``{width: {name: (mean - theory,
    stderr)}}`` (:func:`simulate` at each width). The theory is the ``N -> oo`` limit, so an
    ``O(1/N)`` bias shows as ``N (mean - theory)`` roughly constant across widths."""
    out: dict = {}
    for n in widths:
        sim = simulate(act, batch_size, n, depth, samples, seed, epsilon, sigma_w,
                       backend=backend)
        out[n] = {name: (m.mean - m.theory, m.stderr)
                  for name, m in sim.measurements().items()
                  if m.mean is not None and m.theory is not None}
    return out

def kernel(act, X, batch_size, depth: int = 1, epsilon=0, sigma_w=1, batchnorm: bool = True,
           sigma_b=0, *, tol: float = 1e-10, route: str = "auto", scheduler=None,
           workers: int = 1):
    """The depth-``depth`` kernel (NNGP prior) of a wide network on the rows of ``X`` (n x d;
    consecutive rows of ``batch_size`` form the batches): a
    :class:`~bnmft.numerics.kernel.KernelResult` with ``matrix`` (n x n float64), ``error``
    and ``accuracy`` (the largest error relative to ``sqrt(K_ii K_jj)``). With
    ``batchnorm=False`` the vanilla recursion with biases ``N(0, sigma_b^2)``. ``scheduler``:
    a Dask scheduler address or Client (needs ``bnmft[dask]``); ``workers``: local worker
    processes for the cross blocks. See
    :func:`bnmft.numerics.kernel.kernel`."""
    from bnmft.numerics.kernel import kernel as _kernel

    return _kernel(_activation_of(act), X, batch_size, depth, epsilon, sigma_w, batchnorm,
                   sigma_b, tol=tol, route=route, scheduler=scheduler, workers=workers)
