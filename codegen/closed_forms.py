"""Closed forms of one activation -> a :class:`~.spec.ModuleSpec`.

:func:`derivation_functions` is the only code in codegen that reads derive's objects (a
``Derivation`` and its ``DerivedQuantity`` items); everything after it sees specs only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sympy as sp

from .errors import CodegenError
from .render import one_line
from .spec import Constant, FunctionSpec, ModuleSpec, batch_argument, with_depth_definitions

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


def closed_form_module(quantities, *, module: str, activation_name: str | None = None):
    """The :class:`ModuleSpec` of the closed forms in ``quantities`` (see
    :func:`derivation_functions`), named ``module``."""
    activation, functions = derivation_functions(quantities, activation_name)
    return ModuleSpec(
        name=module,
        title=f"Closed-form BSB1 quantities for activation {one_line(activation)}",
        functions=with_depth_definitions(functions),
        header=(f"Activation: {activation}",),
        constants=(Constant("ACTIVATION", activation),),
    )
