"""Exact Gaussian-process regression with a network's kernel as the prior (NNGP inference).

Prior ``f ~ GP(0, k)``, observations ``y = f(X) + e``, ``e ~ N(0, s I)``. The posterior of
``f`` at test inputs is Gaussian with (Rasmussen & Williams 2006, eqs 2.25-2.26, 2.30;
Algorithm 2.1)

    mean = K_* (K + s I)^{-1} y
    var  = diag(K_**) - diag(K_* (K + s I)^{-1} K_*^T)
    log p(y | X) = -1/2 y^T (K + s I)^{-1} y - 1/2 log det(K + s I) - n/2 log(2 pi)

(``K`` the train kernel, ``K_*`` the test x train block, ``diag(K_**)`` the prior variance
at the test points; ``y`` may have ``k`` columns, one independent GP each with the same
kernel, and the log marginal likelihood is then the sum over columns). The variance is that
of the latent ``f`` (no observation noise added).

Regulariser policy. ``s = jitter * mean(diag K)``: ``jitter`` is relative to the prior
variance scale, given by the caller (default :data:`DEFAULT_JITTER`). If the Cholesky
factorisation of ``K + s I`` fails (``K`` numerically singular), ``jitter`` is multiplied
by 10 and the factorisation retried, up to :data:`MAX_JITTER`; the value used is reported
(:attr:`GPPosterior.jitter`). Beyond that the kernel is not positive semi-definite and the
call fails (``ArithmeticError``), it never returns an unregularised guess.

Two routes. The fast route is the Cholesky factorisation (``scipy.linalg.cho_factor``). The
reference solves the same regularised system by an LU factorisation with partial pivoting
(``scipy.linalg.lu_factor``) and takes ``log det`` from the LU diagonal. The digits on which
the two agree are reported for the mean, the variance and ``log p(y)``, norm-wise: for the
mean ``-log10(max |m_chol - m_lu| / max |m_chol|)`` (the same for the variance). They
measure the rounding error amplified by the conditioning of ``K + s I``. The kernel's own
error enters through ``kernel_accuracy`` (:func:`posterior`): the posterior recomputed from
the kernel moved by its claimed error bound, the digits being the lesser agreement.

Sanity. The kernel blocks must be finite and ``K`` symmetric (to ``1e-10`` relative); the
posterior must be finite; a negative variance within its error estimate (the disagreement
of the routes, or ``1e3`` ulps of the prior variance) is rounding and is set to 0 (counted in
:attr:`GPPosterior.variance_clipped`), one below that means the kernel blocks are not
those of one positive semi-definite kernel (``ArithmeticError``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

#: Default relative jitter (``s / mean(diag K)``): of the order of the kernel's default
#: accuracy (``1e-10``), so the regression is (near) noiseless.
DEFAULT_JITTER = 1e-10
#: Largest relative jitter the geometric increase may reach before the kernel is refused.
MAX_JITTER = 1e-1
#: First jitter tried after a failure when the caller asked for none.
FIRST_JITTER = 1e-14
#: Relative asymmetry of ``K`` tolerated (a kernel is symmetric up to rounding).
SYMMETRY_TOLERANCE = 1e-10


@dataclass(frozen=True)
class GPPosterior:
    """The posterior at the test points, with the regulariser used and the agreement of the
    two routes.

    ``mean``: ``(n_test, k)`` (``(n_test,)`` if ``y`` was 1-D); ``variance``: ``(n_test,)``
    latent variance (>= 0); ``jitter``: relative jitter used, ``noise``: the absolute
    ``s = jitter * mean(diag K)`` added to the diagonal; ``jitter_tries``: factorisations
    attempted; ``log_marginal_likelihood``: ``log p(y | X)`` (summed over columns);
    ``mean_digits``, ``variance_digits``, ``lml_digits``: digits on which the Cholesky and
    LU routes agree (``inf``: identical); ``variance_clipped``: rounding negatives set to 0.
    """

    mean: np.ndarray
    variance: np.ndarray
    jitter: float
    noise: float
    jitter_tries: int
    log_marginal_likelihood: float
    mean_digits: float
    variance_digits: float
    lml_digits: float
    variance_clipped: int


def _normwise_digits(a: np.ndarray, b: np.ndarray) -> float:
    """``-log10(max |a - b| / max |a|)`` (``inf`` if equal; absolute if ``a`` is 0)."""
    diff = float(np.max(np.abs(a - b), initial=0.0))
    if diff == 0.0:
        return math.inf
    scale = float(np.max(np.abs(a), initial=0.0)) or 1.0
    return max(0.0, -math.log10(diff / scale))


def _check_blocks(k_train, k_cross, k_test_diag, y):
    k_train = np.asarray(k_train, dtype=np.float64)
    k_cross = np.asarray(k_cross, dtype=np.float64)
    k_test_diag = np.asarray(k_test_diag, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = k_train.shape[0]
    if k_train.ndim != 2 or k_train.shape != (n, n) or n == 0:
        raise ValueError(f"K_train must be a non-empty square matrix (got {k_train.shape})")
    if k_cross.ndim != 2 or k_cross.shape[1] != n:
        raise ValueError(f"K_cross must be n_test x {n} (got {k_cross.shape})")
    if k_test_diag.shape != (k_cross.shape[0],):
        raise ValueError(f"K_test diagonal must have {k_cross.shape[0]} entries "
                         f"(got {k_test_diag.shape})")
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y must have {n} rows (got {y.shape})")
    for name, block in (("K_train", k_train), ("K_cross", k_cross),
                        ("K_test diagonal", k_test_diag), ("y", y)):
        if not np.all(np.isfinite(block)):
            raise ArithmeticError(f"{name} holds NaN or inf")
    scale = float(np.max(np.abs(k_train)))
    if scale == 0.0:
        raise ArithmeticError("K_train is zero: the prior has no variance")
    asym = float(np.max(np.abs(k_train - k_train.T))) / scale
    if asym > SYMMETRY_TOLERANCE:
        raise ArithmeticError(f"K_train is not symmetric (relative asymmetry {asym:.1e})")
    return k_train, k_cross, k_test_diag, y


def _cholesky(k_train: np.ndarray, jitter: float):
    """``cho_factor(K + s I)`` with the geometric jitter policy; ``(factor, jitter, s,
    tries)``."""
    scale = float(np.mean(np.diag(k_train)))
    if not scale > 0:
        raise ArithmeticError(f"K_train has mean diagonal {scale:.3g} <= 0: not a kernel")
    tries = 0
    current = jitter
    while True:
        tries += 1
        noise = current * scale
        regularised = k_train + noise * np.eye(k_train.shape[0])
        try:
            factor = scipy.linalg.cho_factor(regularised, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            factor = None
        if factor is not None and np.all(np.diag(factor[0]) > 0):
            return factor, regularised, current, noise, tries
        nxt = current * 10 if current > 0 else FIRST_JITTER
        if nxt > MAX_JITTER * (1 + 1e-12):
            raise ArithmeticError(
                f"K_train + jitter * mean(diag K) I is not positive definite up to jitter "
                f"{MAX_JITTER:g} ({tries} factorisations): the kernel is not positive "
                "semi-definite")
        current = nxt


def _perturbed(k_train, k_cross, k_test_diag, y2, jitter, accuracy):
    """Posterior mean and variance (Cholesky route) from kernel blocks moved by their error
    bound with random signs: ``K_pq + r_pq a sqrt(K_pp K_qq)``, ``r = +-1`` symmetric."""
    rng = np.random.default_rng(20190212)
    d = np.sqrt(np.abs(np.diag(k_train)))
    dt = np.sqrt(np.abs(k_test_diag))
    signs = rng.choice([-1.0, 1.0], size=k_train.shape)
    signs = np.triu(signs) + np.triu(signs, 1).T
    kt = k_train + accuracy * signs * np.outer(d, d)
    kc = k_cross + accuracy * rng.choice([-1.0, 1.0], size=k_cross.shape) * np.outer(dt, d)
    kd = k_test_diag * (1 + accuracy * rng.choice([-1.0, 1.0], size=k_test_diag.shape))
    try:
        factor = _cholesky(kt, jitter)[0]
    except ArithmeticError:
        raise ArithmeticError("the train kernel moved by its own error bound is not positive "
                              "definite up to the largest jitter: the posterior is not "
                              "determined by a kernel this accurate") from None
    alpha = scipy.linalg.cho_solve(factor, y2, check_finite=False)
    lower = np.tril(factor[0])
    v = scipy.linalg.solve_triangular(lower, kc.T, lower=True, check_finite=False)
    return (kc @ alpha, np.maximum(kd - np.einsum("ij,ij->j", v, v), 0.0),
            _lml(y2, alpha, 2.0 * float(np.sum(np.log(np.diag(lower))))))


def _lml(y2, alpha, logdet) -> float:
    """``-1/2 y^T alpha - k/2 log det - k n/2 log(2 pi)`` summed over the k columns."""
    n, k = y2.shape
    return float(-0.5 * np.sum(y2 * alpha) - 0.5 * k * logdet
                 - 0.5 * k * n * math.log(2 * math.pi))


def posterior(k_train, k_cross, k_test_diag, y, jitter: float = DEFAULT_JITTER,
              kernel_accuracy: float | None = None) -> GPPosterior:
    """The GP posterior mean and latent variance at the test points, and ``log p(y | X)``.

    ``k_train``: ``n x n`` train kernel, ``k_cross``: ``n_test x n`` (test rows, train
    columns), ``k_test_diag``: the ``n_test`` prior variances, ``y``: ``n`` or ``n x k``;
    ``jitter`` >= 0 relative to ``mean(diag K)`` (the module docstring states the policy).
    ``kernel_accuracy`` (``a``: every kernel entry within ``a sqrt(K_pp K_qq)`` of the exact
    one, as :class:`~bnmft.numerics.kernel.KernelResult` claims) adds an estimate of the
    posterior's sensitivity to the kernel's own error: the posterior is recomputed (same
    jitter) from blocks moved by ``+-a sqrt(K_pp K_qq)`` with random signs (fixed seed,
    ``K`` kept symmetric), and the digits reported are the lesser of that agreement and the
    Cholesky/LU one (for ``log p(y)`` too). One random perturbation is an estimate, not a
    bound. Raises ``ValueError`` for inconsistent shapes or a bad ``jitter``, ``ArithmeticError``
    for a kernel that is not finite, symmetric and positive semi-definite.
    """
    if not (isinstance(jitter, (int, float)) and math.isfinite(jitter)
            and 0 <= jitter <= MAX_JITTER):
        raise ValueError(f"jitter must be a number in [0, {MAX_JITTER:g}] (got {jitter!r})")
    k_train, k_cross, k_test_diag, y = _check_blocks(k_train, k_cross, k_test_diag, y)
    vector = y.ndim == 1
    y2 = y[:, None] if vector else y

    factor, regularised, used, noise, tries = _cholesky(k_train, float(jitter))
    alpha = scipy.linalg.cho_solve(factor, y2, check_finite=False)
    mean = k_cross @ alpha
    lower = np.tril(factor[0])
    v = scipy.linalg.solve_triangular(lower, k_cross.T, lower=True, check_finite=False)
    variance = k_test_diag - np.einsum("ij,ij->j", v, v)
    logdet = 2.0 * float(np.sum(np.log(np.diag(lower))))
    lml = _lml(y2, alpha, logdet)

    # reference route: LU with partial pivoting of the same regularised matrix
    lu, piv = scipy.linalg.lu_factor(regularised, check_finite=False)
    alpha_lu = scipy.linalg.lu_solve((lu, piv), y2, check_finite=False)
    mean_lu = k_cross @ alpha_lu
    w = scipy.linalg.lu_solve((lu, piv), k_cross.T, check_finite=False)
    variance_lu = k_test_diag - np.einsum("ij,ji->i", k_cross, w)
    # det(K + s I) > 0 is, up to the permutation's sign, the product of the LU pivots
    logdet_lu = float(np.sum(np.log(np.abs(np.diag(lu)))))
    lml_lu = _lml(y2, alpha_lu, logdet_lu)

    for name, value in (("posterior mean", mean), ("posterior variance", variance),
                        ("log marginal likelihood", np.array(lml))):
        if not np.all(np.isfinite(value)):
            raise ArithmeticError(f"the {name} is not finite")
    variance_digits = _normwise_digits(variance, variance_lu)
    rounding = 1e3 * np.finfo(np.float64).eps * float(np.max(np.abs(k_test_diag), initial=0.0))
    tolerance = max(rounding, float(np.max(np.abs(variance - variance_lu), initial=0.0)))
    mean_digits = _normwise_digits(mean, mean_lu)
    lml_digits = _normwise_digits(np.array([lml]), np.array([lml_lu]))
    if kernel_accuracy:
        m2, v2, lml2 = _perturbed(k_train, k_cross, k_test_diag, y2, used,
                                  float(kernel_accuracy))
        mean_digits = min(mean_digits, _normwise_digits(mean, m2))
        variance_digits = min(variance_digits, _normwise_digits(variance, v2))
        lml_digits = min(lml_digits, _normwise_digits(np.array([lml]), np.array([lml2])))
        tolerance = max(tolerance, float(np.max(np.abs(variance - v2), initial=0.0)))
    negative = variance < 0
    if np.any(variance < -tolerance):
        worst = float(np.min(variance))
        raise ArithmeticError(f"posterior variance {worst:.3e} < 0 beyond its error estimate "
                              f"({tolerance:.1e}): the kernel blocks are not positive "
                              "semi-definite together")
    variance = np.where(negative, 0.0, variance)
    return GPPosterior(
        mean=mean[:, 0] if vector else mean,
        variance=variance,
        jitter=used,
        noise=noise,
        jitter_tries=tries,
        log_marginal_likelihood=lml,
        mean_digits=mean_digits,
        variance_digits=variance_digits,
        lml_digits=lml_digits,
        variance_clipped=int(np.count_nonzero(negative)),
    )


# -- data -------------------------------------------------------------------------------------


def _array(value, name: str, ndims: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of real numbers with ``ndim`` in ``ndims``; refuses
    object, string, boolean and complex arrays and NaN/inf (naming the first bad row)."""
    from bnmft.derive import InvalidInput

    arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer)
                                   or np.issubdtype(arr.dtype, np.floating)):
        raise InvalidInput(f"{name} must be an array of real numbers (got dtype {arr.dtype})")
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise InvalidInput(f"{name} must be {want} (got shape {arr.shape})")
    if arr.shape[0] == 0 or arr.size == 0:
        raise InvalidInput(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        more = f" (and {len(rows) - 1} more)" if len(rows) > 1 else ""
        raise InvalidInput(f"{name} row {rows[0]} holds NaN or inf{more}")
    return arr


def _check_batches(X: np.ndarray, name: str, batch_size: int, why: str,
                   zero_variance: bool) -> None:
    from bnmft.derive import InvalidInput

    n = X.shape[0]
    if n % batch_size:
        raise InvalidInput(f"{name} has {n} rows, not a multiple of the batch size "
                           f"{batch_size}: {why}")
    if not zero_variance:
        return
    blocks = X.reshape(n // batch_size, batch_size, -1)
    centred = blocks - blocks.mean(axis=1, keepdims=True)
    spread = np.sqrt(np.sum(centred**2, axis=(1, 2)))
    size = np.sqrt(np.sum(blocks**2, axis=(1, 2)))
    flat = np.flatnonzero(spread <= 1e-12 * np.maximum(size, np.finfo(np.float64).tiny))
    if flat.size:
        b = int(flat[0])
        raise InvalidInput(f"batch {b} of {name} (rows {b * batch_size}-"
                           f"{(b + 1) * batch_size - 1}) has zero variance (its rows are "
                           "equal): batchnorm divides by the batch's spread")


def check_data(X, y, Xt, yt=None, batch_size: int | None = None, zero_variance=True):
    """The training inputs ``X`` (n x d), labels ``y`` (n or n x k), test inputs ``Xt``
    (n_test x d) and optional test labels ``yt`` as float64 arrays, or
    :class:`~bnmft.derive.InvalidInput` (one line) naming what is wrong.

    With a ``batch_size`` (a batchnorm network) both ``n`` and ``n_test`` must be multiples
    of it: consecutive rows form the batches, for the test inputs as for the training
    inputs. A test point's representation in a batchnorm network depends on its
    batch-mates, so padding a short last test batch with made-up points would change the
    predictions of the real ones; the caller chooses the batches instead. A batch whose
    rows are all equal (zero variance) is refused when ``zero_variance`` (at ``eps = 0``
    batchnorm would divide by zero; the kernel routes of :mod:`.kernel` refuse it at any
    ``eps``).
    """
    from bnmft.derive import InvalidInput

    X = _array(X, "X", (2,))
    Xt = _array(Xt, "Xt", (2,))
    y = _array(y, "y", (1, 2))
    if Xt.shape[1] != X.shape[1]:
        raise InvalidInput(f"feature dimension mismatch: X has {X.shape[1]} columns, Xt "
                           f"has {Xt.shape[1]}")
    if y.shape[0] != X.shape[0]:
        raise InvalidInput(f"y has {y.shape[0]} rows, X has {X.shape[0]}: one label row "
                           "per training input")
    if yt is not None:
        yt = _array(yt, "yt", (1, 2))
        if yt.shape[0] != Xt.shape[0]:
            raise InvalidInput(f"test labels have {yt.shape[0]} rows, Xt has {Xt.shape[0]}")
        if yt.shape[1:] != y.shape[1:]:
            def columns(a):
                return f"{a.shape[1]} columns" if a.ndim == 2 else "one column (1-D)"
            raise InvalidInput(f"test labels have {columns(yt)}, y has {columns(y)}")
    if batch_size is not None:
        _check_batches(X, "X", batch_size, "consecutive rows form the batches",
                       zero_variance)
        _check_batches(Xt, "Xt", batch_size,
                       "test inputs are batched in consecutive rows of their own, and a "
                       "test point's prediction depends on its batch-mates, so a short "
                       "batch is not padded; give a multiple of B", zero_variance)
    return X, y, Xt, yt


# -- summaries and test metrics ------------------------------------------------------------


@dataclass(frozen=True)
class GPResult:
    """:func:`bnmft.gp`: the posterior, the kernel's settings and, with test labels, the
    test metrics.

    ``settings``: activation, batch size, depth, batchnorm, eps, sigma_w, sigma_b as given;
    ``mean_summary``: ``{"min", "max", "rms"}``, ``variance_summary``: ``{"min", "max",
    "mean"}``, as
    :class:`~bnmft.numerics.Number` (digits from the norm-wise agreement of the two routes);
    ``mse``: :class:`~bnmft.numerics.Number` (``mean((m - yt)^2)`` over all entries) or None;
    ``accuracy``: fraction of test rows whose largest posterior mean is the largest label
    (``k >= 2`` columns; None otherwise), ``correct`` its count, ``ambiguous`` the rows whose
    top two means are closer than the routes' disagreement (their argmax is not certain),
    ``accuracy_bounds``: the accuracy with those rows counted wrong and counted right.
    """

    posterior: GPPosterior
    settings: dict
    mean_summary: dict
    variance_summary: dict
    mse: object = None
    accuracy: float | None = None
    correct: int | None = None
    ambiguous: int | None = None
    accuracy_bounds: tuple | None = None

    @property
    def mean(self) -> np.ndarray:
        return self.posterior.mean

    @property
    def variance(self) -> np.ndarray:
        return self.posterior.variance


def _error(values: np.ndarray, digits: float) -> float:
    """Absolute error implied by norm-wise ``digits`` of ``values``."""
    if digits == math.inf:
        return 0.0
    return float(np.max(np.abs(values), initial=0.0)) * 10.0 ** -digits


def _number(value: float, error: float, route: str):
    from .precision import Number, digits_from_error

    return Number(float(value), digits_from_error(value, error), route)


def summarise(post: GPPosterior, settings: dict, yt=None) -> GPResult:
    """Min, max and mean of the posterior mean and variance, and (``yt`` given) the test
    MSE and accuracy, each with the digits the two routes' agreement supports.

    An absolute error ``dm = max|m| 10^-mean_digits`` of each mean entry moves the MSE by
    at most ``2 sqrt(mse) dm + dm^2`` (Cauchy-Schwarz); an argmax is certain when the top
    two means differ by more than ``2 dm``.
    """
    route = "Cholesky vs LU"
    dm = _error(post.mean, post.mean_digits)
    dv = _error(post.variance, post.variance_digits)

    def summary(values, err, centre):
        return {"min": _number(np.min(values), err, route),
                "max": _number(np.max(values), err, route),
                centre: _number(np.mean(values) if centre == "mean"
                                else np.sqrt(np.mean(values**2)), err, route)}

    # the mean's summary is its root mean square: centred labels give posterior means
    # that sum to ~0, whose plain average would be all rounding
    out = dict(posterior=post, settings=settings, mean_summary=summary(post.mean, dm, "rms"),
               variance_summary=summary(post.variance, dv, "mean"))
    if yt is not None:
        yt = np.asarray(yt, dtype=np.float64)
        mse = float(np.mean((post.mean - yt) ** 2))
        out["mse"] = _number(mse, 2 * math.sqrt(mse) * dm + dm * dm, route)
        if post.mean.ndim == 2 and post.mean.shape[1] >= 2:
            top2 = np.sort(post.mean, axis=1)[:, -2:]
            right = np.argmax(post.mean, 1) == np.argmax(yt, 1)
            unsure = top2[:, 1] - top2[:, 0] <= 2 * dm
            certain = int(np.count_nonzero(right & ~unsure))
            n_test = len(yt)
            out.update(correct=int(np.count_nonzero(right)),
                       accuracy=int(np.count_nonzero(right)) / n_test,
                       ambiguous=int(np.count_nonzero(unsure)),
                       accuracy_bounds=(certain / n_test,
                                        (certain + int(np.count_nonzero(unsure))) / n_test))
    return GPResult(**out)


# -- the prior at several depths -----------------------------------------------------------


def _inputs_of(K: np.ndarray) -> np.ndarray:
    """Inputs ``X'`` (n x n) with ``X' X'^T / n = K``: ``X' = sqrt(n) U Lambda^{1/2}`` from
    the eigendecomposition of the symmetric PSD ``K`` (eigenvalues below 0 by rounding, of
    order ``1e-16`` relative, are set to 0)."""
    lam, U = np.linalg.eigh((K + K.T) / 2)
    return math.sqrt(K.shape[0]) * U * np.sqrt(np.maximum(lam, 0.0))


def kernels_by_depth(act, X, batch_size, depths, **options) -> dict:
    """``{L: KernelResult}``: the depth-``L`` kernel of
    :func:`bnmft.numerics.kernel.kernel` on the rows of ``X`` for each ``L`` in ``depths``,
    computed in one pass of ``max(depths)`` layers.

    Each layer maps the previous covariance ``K`` alone (the inputs enter only through
    ``Sigma_0 = X X^T / d``), so the recursion from depth ``L1`` to ``L2`` is
    :func:`~bnmft.numerics.kernel.kernel` of depth ``L2 - L1`` on inputs ``X'`` with
    ``X' X'^T / n = K_{L1}`` (:func:`_inputs_of`). As in one call of
    :func:`~bnmft.numerics.kernel.kernel` of depth ``max(depths)``, each layer is computed to
    ``tol / max(depths)`` (``tol`` the accuracy asked of the deepest kernel, default that of
    ``kernel``), and the accuracy claimed adds up the layers' claims. ``options``:
    ``epsilon``, ``sigma_w``, ``batchnorm``, ``sigma_b``, ``tol``, ``route``, ``workers``,
    ``scheduler``.
    """
    from .kernel import TOL, KernelResult, kernel

    wanted = sorted(set(int(L) for L in depths))
    tol = options.pop("tol", TOL)
    out: dict = {}
    inputs, done, rel = X, 0, 0.0
    for L in wanted:
        res = kernel(act, inputs, batch_size, depth=L - done,
                     tol=tol * (L - done) / wanted[-1], **options)
        rel += res.accuracy
        d = np.sqrt(np.abs(np.diag(res.matrix)))
        out[L] = KernelResult(res.matrix, rel * np.outer(d, d), res.route)
        inputs, done = _inputs_of(res.matrix), L
    return out
