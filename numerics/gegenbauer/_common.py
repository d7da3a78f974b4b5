"""Shared pieces of the Gegenbauer engine: the point factor ``phi``, the error type, the
plan record and the checks every route makes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnmft.derive import Point

#: The function ``phi`` itself as a point factor.
PHI = Point(0, 1, 0)
#: float64 machine epsilon (rounding estimates).
EPS = float(np.finfo(float).eps)
#: Most digits by which a moment may lie below its scale (``||F|| ||G||`` for a two-point
#: moment, whose Funk-Hecke terms are that large) and still be resolved relative to itself:
#: the mpmath route raises its working digits by that much; beyond it an output is judged
#: against ``10^-CANCELLATION_MAX`` of its scale.
CANCELLATION_MAX = 60


class GegenbauerError(ArithmeticError):
    """The Gegenbauer route cannot evaluate this quantity (message says why)."""


@dataclass
class Plan:
    """What the float route used for each batch size (diagnostics)."""

    K: np.ndarray
    nodes: np.ndarray


def check_batch_sizes(Bs) -> np.ndarray:
    """``Bs`` as a float array; :class:`GegenbauerError` unless finite integers ``>= 4``."""
    Bs = np.atleast_1d(np.asarray(Bs, dtype=float))
    if np.any(~np.isfinite(Bs)) or np.any(Bs < 4) or np.any(Bs != np.round(Bs)):
        raise GegenbauerError("batch sizes must be finite integers >= 4 (B = oo: see "
                              "bnmft.numerics.gaussian_limit)")
    return Bs
