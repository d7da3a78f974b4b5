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


def generate(act, langs=("numpy", "c"), module: str | None = None) -> dict[str, dict[str, str]]:
    """Stage 4: ``{lang: {filename: source}}`` of the generated modules (closed forms)."""
    from bnmft.codegen import generate as _generate

    deriv = derivation(act)
    module = module or module_name(deriv.activation.name)
    return {lang: _generate(deriv, lang=lang, module=module) for lang in langs}


def verify(act, batch_sizes=None, digits: int = 30):
    """Stage 5: every route of every quantity against independent mpmath references."""
    from bnmft.numerics import DEFAULT_BATCH_SIZES, verify as _verify

    sizes = list(DEFAULT_BATCH_SIZES) if batch_sizes is None else batch_sizes
    return _verify(derivation(act), sizes, digits)


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


def export(acts, out, package: str = "bnmft_generated"):
    """Stage 4-5 for code: a standalone pip-installable package of the generated numpy and C
    modules of ``acts`` in folder ``out`` (written as a whole), with the digits each generated
    numpy function was verified to against the mpmath references (least over
    :data:`EXPORT_VERIFY_BATCH_SIZES`). Returns the folder."""
    from bnmft.codegen.export import ExportItem, render_package, write_package

    items = []
    for act in acts:
        deriv = derivation(act)
        checks = verify(deriv, list(EXPORT_VERIFY_BATCH_SIZES), EXPORT_VERIFY_DIGITS)
        digits: dict = {}
        for ch in checks:
            if ch.route == "generated numpy module":
                digits[ch.quantity] = min(digits.get(ch.quantity, math.inf), ch.digits)
        items.append(ExportItem(deriv, module_name(deriv.activation.name), digits))
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
        for lang in ("numpy", "c"):
            try:
                sources[lang] = generate(deriv, [lang])[lang]
            except CodegenError as err:
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
