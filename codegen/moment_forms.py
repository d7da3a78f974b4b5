"""The derived moment forms as a generated numpy module, ``bnmft.numerics._moment_forms``.

The forms of :func:`bnmft.derive.bsb1.moment_forms` do not depend on the activation, so they
are generated once and shipped: the float64 route of :func:`bnmft.numerics.evaluate.analyze`
evaluates them without re-deriving (a derivation costs about half a second per process). A
golden test regenerates the module and compares it byte for byte; after a change to the
derivation run ``python -m bnmft.codegen.moment_forms`` to rewrite it.

The module is described by a :class:`~.spec.ModuleSpec` and printed by the same path as the
closed forms (:func:`bnmft.codegen.render_module`).
"""

from __future__ import annotations

from pathlib import Path

from .files import atomic_write_text
from .generate import render_module
from .spec import (
    Argument,
    Constant,
    FunctionSpec,
    ModuleSpec,
    batch_argument,
    with_depth_definitions,
)

#: Where the generated module lives (inside the numerics stage that uses it).
TARGET = Path(__file__).resolve().parents[1] / "numerics" / "_moment_forms.py"
#: Name of the generated module (the file name of :data:`TARGET`).
MODULE = TARGET.stem
#: Where a moment form holds: the BSB1 domain, for an activation whose moments it uses exist.
DOMAIN = "B >= 4 (paper Sec. 3.1), for any phi whose sphere moments used here are finite"

_DESCRIPTION = (
    (
        "Derived by ``bnmft.derive.bsb1.moment_forms`` (exchangeable reduction of the forward "
        "and backward maps at the BSB1 point); the same forms hold for every activation."
    ),
    (
        "The arguments after ``B`` are sphere moments: ``MOMENTS[i]`` describes argument "
        "``m{i}`` as one or two sphere coordinates, each carrying "
        "``z^m*phi(z)^p*dphi(z)^q`` (``dphi = phi'``) as ``(m, p, q)``."
    ),
)


def moment_forms_module() -> ModuleSpec:
    """The :class:`ModuleSpec` of every BSB1 quantity as a function of ``B`` and the sphere
    moments ``m0, m1, ...`` (in the order of :func:`bnmft.derive.moments.moments_of`)."""
    from bnmft.derive import QUANTITIES, moment_forms
    from bnmft.derive import moments_of

    forms = moment_forms()
    ordered = moments_of(forms[name].expr for name in QUANTITIES)
    arguments = (batch_argument(),) + tuple(
        Argument(mo.symbol, f"m{i}", mo.name) for i, mo in enumerate(ordered)
    )
    functions = tuple(
        FunctionSpec(
            name=name,
            arguments=arguments,
            expr=forms[name].expr,
            summary=f"{name} as a function of sphere moments (elementwise).",
            math=(("Form", str(forms[name].expr)),),
            provenance=forms[name].provenance,
            domain=DOMAIN,
        )
        for name in QUANTITIES
    )
    moments = Constant(
        "MOMENTS",
        tuple(tuple((p.m, p.p, p.q) for p in mo.points) for mo in ordered),
        comments=tuple(f"m{i} = {mo.name}" for i, mo in enumerate(ordered)),
        public=True,
    )
    return ModuleSpec(
        name=MODULE,
        title="Every BSB1 quantity as a function of sphere moments",
        functions=with_depth_definitions(functions),
        header=("Regenerate with: python -m bnmft.codegen.moment_forms",),
        description=_DESCRIPTION,
        constants=(moments,),
    )


def render_moment_forms() -> str:
    """Source text of the moment-forms module (pure function of the derivation and version)."""
    return render_module(moment_forms_module(), lang="numpy")[TARGET.name]


def main() -> None:
    """Rewrite :data:`TARGET` (atomically) and say whether it changed."""
    text = render_moment_forms()
    old = TARGET.read_text() if TARGET.exists() else None
    if old == text:
        print(f"{TARGET.name} is up to date")
        return
    atomic_write_text(TARGET, text)
    print(f"wrote {TARGET.name}")


if __name__ == "__main__":
    main()
