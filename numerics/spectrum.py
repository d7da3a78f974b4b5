"""Numbers for a :class:`~bnmft.derive.Spectrum`: every eigenvalue of the forward and backward
maps at given batch sizes, with its space and dimension.

The eigenvalues are quantities of kind ``"eigenvalue"`` in the spectrum's own
:class:`~bnmft.derive.Derivation`, so :func:`.evaluate.analyze` evaluates them by the same
routes as the scalar quantities (closed form at two precisions; float64 sphere moments with
propagated errors; mpmath sphere quadrature beyond float digits or when the float route
falls short). ``bsb1_stable`` is true iff the largest forward eigenvalue outside the kernel
is below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bnmft.derive import B as B_SYM
from bnmft.derive import Spectrum

from .evaluate import analyze, stability
from .precision import Number


#: Route of an eigenvalue the derivation cannot evaluate (the entry's note says why).
UNAVAILABLE = "not available"


@dataclass(frozen=True)
class SpectrumNumber:
    """One eigenvalue at one batch size: ``space``, ``dim`` (an integer), the ``number``."""

    name: str
    space: str
    dim: int
    number: Number


@dataclass
class SpectrumAnalysis:
    """The forward and backward spectra of one activation at one batch size."""

    activation: object
    batch_size: int
    forward: list[SpectrumNumber] = field(default_factory=list)
    backward: list[SpectrumNumber] = field(default_factory=list)
    bsb1_stable: bool | None = None
    stability_note: str = ""
    #: ``"fixed point"``, or (eps > 0) ``"no nonzero fixed point"`` with no eigenvalues
    regime: str = "fixed point"
    note: str = ""

    @property
    def entries(self) -> list[SpectrumNumber]:
        return self.forward + self.backward

    def unavailable(self) -> list[str]:
        """Eigenvalues the derivation cannot evaluate for this activation, with the reason."""
        return [f"{e.name}: {e.number.note}" for e in self.entries if e.number.route == UNAVAILABLE]

    def shortfalls(self, digits: int) -> list[str]:
        """Evaluated eigenvalues that did not reach ``digits``."""
        out = []
        for e in self.entries:
            num = e.number
            if num.route == UNAVAILABLE:
                continue
            if num.value is None:
                out.append(f"{e.name}: {num.note or 'not computed'}")
            elif num.digits < digits:
                out.append(f"{e.name}: only {num.digits:.1f} digits ({num.route})")
        return out


def analyze_spectrum(spec: Spectrum, batch_sizes, digits: int = 16) -> list[SpectrumAnalysis]:
    """Every eigenvalue of ``spec`` at each (finite) batch size, to ``digits`` significant
    digits or marked as falling short. Dimensions grow with ``B``, so ``B = inf`` is refused
    (``ValueError``)."""
    sizes = list(batch_sizes)
    for b in sizes:
        if b == math.inf or int(b) != b or b < 4:
            raise ValueError(f"a spectrum needs finite integer batch sizes >= 4 (got {b})")
    sizes = [int(b) for b in sizes]
    evaluable = spec.derivation
    analyses = analyze(evaluable, sizes, digits) if evaluable.quantities else [None] * len(sizes)
    out = []
    for Bv, an in zip(sizes, analyses):
        numbers = an.numbers if an is not None else {}
        res = SpectrumAnalysis(spec.activation, Bv)
        for e in spec.entries:
            num = numbers.get(e.name) or Number(None, 0.0, UNAVAILABLE, e.note)
            dim = int(e.dim.subs(B_SYM, Bv))
            getattr(res, e.direction).append(SpectrumNumber(e.name, e.space, dim, num))
        top = [e.name for e in res.forward if e.space != "kernel"]
        res.bsb1_stable, res.stability_note = stability(
            {e.name: e.number for e in res.forward}, top)
        out.append(res)
    return out
