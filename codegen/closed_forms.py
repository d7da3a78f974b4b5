"""Closed forms of one activation -> a :class:`~.spec.ModuleSpec`.

:func:`derivation_functions` is the only code in codegen that reads derive's objects (a
``Derivation`` and its ``DerivedQuantity`` items); everything after it sees specs only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp

from .errors import CodegenError
from .render import one_line
from .spec import Constant, FunctionSpec, ModuleSpec, ScaleParameter, batch_argument
from .spec import with_depth_definitions

#: Symbols of the compact (paper) form, explained where they appear.
_KERNEL_SYMBOLS = frozenset({"J", "Jp"})
_KERNEL_NOTE = (
    "J = J(c) and Jp = J'(c) are the arc-cosine kernel and its derivative at c = -1/(B - 1)"
)


def _text(value: object) -> str:
    return "not recorded" if value is None else str(value)


def closed_form_spec(
    name: str, expr: sp.Expr, *, compact, provenance, domain, activation: str
) -> FunctionSpec:
    """A function of ``B`` documented by its compact (paper) form and its explicit form."""
    explicit = str(expr)
    if compact is not None and compact != expr:
        names = {s.name for s in compact.free_symbols}
        where = f", where {_KERNEL_NOTE}" if names & _KERNEL_SYMBOLS else ""
        math = (("Formula", f"{compact}{where}"), ("Explicit in B", explicit))
    else:
        math = (("Formula", explicit),)
    return FunctionSpec(
        name=name,
        arguments=(batch_argument(),),
        expr=expr,
        summary=f"{name}(B) for activation {one_line(activation)}, elementwise in B.",
        math=math,
        provenance=_text(provenance),
        domain=_text(domain),
    )


def derivation_functions(quantities, activation_name: str | None = None):
    """``(activation name, function specs)`` of ``quantities``: a ``Derivation`` (its closed
    forms, activation name from it unless given), a mapping ``name -> DerivedQuantity`` or an
    iterable of ``DerivedQuantity``; the order is kept. Reads ``.closed``, ``.activation.name``
    and, per quantity, ``.name``, ``.expr``, ``.compact``, ``.provenance``, ``.domain``."""
    closed = getattr(quantities, "closed", None)  # a whole Derivation
    if isinstance(closed, Mapping):
        if activation_name is None:
            activation_name = getattr(getattr(quantities, "activation", None), "name", None)
        if not closed:
            name = activation_name or "this activation"
            raise CodegenError(f"{name} has no closed forms; there is nothing to generate")
        quantities = closed
    if activation_name is None:
        raise CodegenError("activation_name is required unless a Derivation is given")
    if isinstance(quantities, Mapping):
        items = list(quantities.items())
    elif isinstance(quantities, Iterable) and not isinstance(quantities, (str, bytes)):
        items = [(getattr(q, "name", None), q) for q in quantities]
    else:
        raise CodegenError(f"expected quantities (mapping or iterable), got {type(quantities)}")
    specs = tuple(
        closed_form_spec(
            getattr(q, "name", key),
            getattr(q, "expr", None),
            compact=getattr(q, "compact", None),
            provenance=getattr(q, "provenance", None),
            domain=getattr(q, "domain", None),
            activation=str(activation_name),
        )
        for key, q in items
    )
    return str(activation_name), specs


@dataclass(frozen=True)
class ClosedVerification:
    """How far a closed-form module was verified at generation time: per quantity the least
    significant digits (floored to 0.1, at most 16) on which the generated numpy module (and
    the compiled C kernels, ``languages``) agree with the mpmath reference at
    ``batch_sizes``."""

    digits: dict
    batch_sizes: tuple[int, ...]
    languages: tuple[str, ...]

    @property
    def least(self) -> float:
        return min(self.digits.values())

    def text(self) -> str:
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        what = {"numpy": "the numpy module", "c": "the C kernels (single and fused)"}
        return (
            f"Verified at generation time: {' and '.join(what[x] for x in self.languages)} "
            f"agree with bnmft's mpmath evaluation of the closed forms (bnmft.analyze, 16 "
            f"digits) at B = {sizes} to {self.least:.1f} significant digits or more (relative "
            f"error <= {10 ** -self.least:.1e}) in every quantity (per quantity: VERIFIED in "
            "the numpy module)."
        )


#: The input scale: the generated functions of ``phi`` evaluate those of ``phi(gamma x)``.
GAMMA = sp.Symbol("gamma", positive=True)


def input_scale_parameter(deriv) -> ScaleParameter | None:
    """``gamma`` of ``phi(gamma x)`` (``gamma > 0``) for a positive-homogeneous ``phi`` of
    degree ``alpha``: each quantity's factor derived from its moment form
    (:func:`bnmft.derive.homogeneous.input_scale`; ``gamma^(2 alpha)`` for ``q*``, 1 for the
    others); None without homogeneity or moment forms (e.g. bare quantities)."""
    hom = getattr(getattr(deriv, "activation", None), "homogeneous", None)
    quantities = getattr(deriv, "quantities", None)
    if hom is None or quantities is None:
        return None
    from bnmft.derive.homogeneous import input_scale

    factors = []
    for q in quantities:
        if q.name in deriv.closed and q.moment_form is not None:
            try:
                factors.append((q.name, input_scale(q.moment_form, hom.alpha, GAMMA)))
            except ValueError:
                return None
    return ScaleParameter(
        symbol=GAMMA, name="gamma", meaning="the input scale: the values for phi(gamma x)",
        valid=sp.Symbol("gamma", real=True) > 0, valid_text="gamma > 0",
        factors=tuple(factors))


def closed_form_module(quantities, *, module: str, activation_name: str | None = None,
                       verified: ClosedVerification | None = None):
    """The :class:`ModuleSpec` of the closed forms in ``quantities`` (see
    :func:`derivation_functions`), named ``module``; ``verified``: the record of
    :func:`verify_closed`, stated in the header (and as ``VERIFIED`` in the numpy module)."""
    activation, functions = derivation_functions(quantities, activation_name)
    header = (f"Activation: {activation}",)
    constants = (Constant("ACTIVATION", activation),)
    description = ()
    if verified is not None:
        least = f"{verified.least:.1f}"
        header += (f"Verified: >= {least} significant digits against mpmath at B = "
                   f"{verified.batch_sizes[0]} ... {verified.batch_sizes[-1]}",)
        description = (verified.text(),)
        constants += (Constant("VERIFIED", dict(verified.digits)),
                      Constant("VERIFIED_BATCH_SIZES", tuple(verified.batch_sizes)))
    return ModuleSpec(
        name=module,
        title=f"Closed-form BSB1 quantities for activation {one_line(activation)}",
        functions=with_depth_definitions(functions),
        header=header,
        description=description,
        constants=constants,
        scale=input_scale_parameter(quantities),
    )


def _closed_references(deriv, Bs) -> dict:
    """``{name: [mpf per B]}``: bnmft's mpmath evaluation of the closed forms, 16 digits."""
    from .quadrature import mpmath_references

    return mpmath_references(deriv, Bs, 15)


def verify_closed(deriv, module: str, languages=("numpy", "c"), Bs=None) -> ClosedVerification:
    """Generate the closed-form modules of ``deriv`` for ``languages``, evaluate them (the C
    kernels compiled) at ``Bs`` (default :data:`.quadrature.VERIFY_BATCH_SIZES`, B from 4 to
    10^6) and compare every quantity with bnmft's mpmath evaluation of the closed forms; raises
    :class:`.quadrature.VerificationError` below :data:`.quadrature.REQUIRED_RTOL` (or if the C
    kernels cannot be compiled)."""
    from .generate import generate
    from .jit import load_c, load_numpy
    from .quadrature import REQUIRED_RTOL, VERIFY_BATCH_SIZES, VerificationError
    from .quadrature import agreement_digits

    from .prepare import check_module_name

    check_module_name(module)  # before the references are computed
    Bs = tuple(VERIFY_BATCH_SIZES if Bs is None else Bs)
    x = np.asarray(Bs, dtype=float)
    ref = _closed_references(deriv, Bs)
    got: dict = {}
    langs = tuple(lang for lang in ("numpy", "c") if lang in languages)
    for lang in langs:
        sources = generate(deriv, lang=lang, module=module)
        if lang == "numpy":
            mod = load_numpy(sources, module)
            values = {n: getattr(mod, n)(x) for n in deriv.closed}
        else:
            try:
                mod = load_c(sources, module)
            except CodegenError as err:
                raise VerificationError(f"{module}: cannot compile the C kernels to check them "
                                        f"({err})") from None
            values = {n: getattr(mod, n)(x) for n in deriv.closed}
            values.update({f"{n} (fused)": v for n, v in mod.all(x).items()})
        for key, vals in values.items():
            name = key.split()[0]
            got.setdefault(name, []).append(_agreement(vals, ref[name], agreement_digits))
    need = -math.log10(REQUIRED_RTOL)
    digits = {}
    for name, found in got.items():
        least = min(found)
        if least < need:
            raise VerificationError(
                f"{deriv.activation.name}: generated {name} agrees with the mpmath reference to "
                f"only {least:.1f} digits (need {need:g}); refusing to write the module"
            )
        digits[name] = math.floor(min(least, 16.0) * 10) / 10
    return ClosedVerification(digits, Bs, langs)


def _agreement(values, reference, agreement_digits) -> float:
    """Digits of agreement, infinite values included (equal infinities agree exactly)."""
    finite = [(v, r) for v, r in zip(values, reference) if not (math.isinf(v) and v == r)]
    if any(math.isinf(v) or math.isnan(v) for v, _ in finite):
        return 0.0
    return agreement_digits([v for v, _ in finite], [r for _, r in finite])
