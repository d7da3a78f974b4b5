"""Tails of slowly converging series estimated from the decay of their last terms."""

from __future__ import annotations

import mpmath
import numpy as np


def series_tail(terms: np.ndarray) -> np.ndarray:
    """Estimate of ``|sum_{k>=K} t_k|`` from the decay of ``|t_k|``, ``k < K`` (last axis: ``k``;
    leading axes: batch sizes, moments).

    With ``m1``, ``m2`` the largest ``|t_k|`` in the third and the last quarter, the blocks are
    assumed to keep shrinking by ``q = m2/m1`` (geometric or power-law decay both give such a
    bound up to a modest factor): tail ``= (K/4) m2 q / (1 - q)``; ``K m2`` if there is no
    decay. Block maxima make it insensitive to parity zeros.
    """
    a = np.abs(terms)
    K = a.shape[-1]
    if K < 8:
        return a.sum(axis=-1)
    q1, q2 = K // 2, (3 * K) // 4
    m1 = a[..., q1:q2].max(axis=-1)
    m2 = a[..., q2:].max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(m1 > 0, m2 / m1, 1.0)
    blk = K - q2
    geometric = blk * m2 * q / np.maximum(1 - q, 1e-300)
    return np.where(q < 0.9, geometric, K * m2)


def series_tail_mp(terms):
    """mpmath version of :func:`series_tail` for one sequence."""
    a = [abs(t) for t in terms]
    K = len(a)
    if K < 8:
        return mpmath.fsum(a)
    q1, q2 = K // 2, (3 * K) // 4
    m1, m2 = max(a[q1:q2]), max(a[q2:])
    q = m2 / m1 if m1 > 0 else mpmath.mpf(1)
    if q < mpmath.mpf("0.9"):
        return (K - q2) * m2 * q / (1 - q)
    return K * m2
