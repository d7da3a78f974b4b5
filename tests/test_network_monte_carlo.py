"""The derived BSB1 quantities against Monte Carlo of the batchnorm network's own maps.

:func:`network_forward_eigenvalues` differentiates the covariance map ``Sigma ->
E[phi(BN h) phi(BN h)^T]`` along one eigenvector of each eigenspace (common random
numbers); :func:`network_gradient_rate` averages the backward map ``Pi -> E[J^T Pi J]`` of
the layer Jacobian. Neither uses a moment form or a derived formula, so this is an
independent (loose) check of the exchangeable reduction for activations that are not
positive-homogeneous, where the brute-force Laplace map does not apply.
"""

import pytest

from bnmft.derive.activation import activation
from bnmft.pipeline import analyze
from bnmft.numerics.montecarlo import network_forward_eigenvalues, network_gradient_rate


def _close(est, value):
    # sampling error (5 standard errors) plus the O(t^2) bias of the difference quotient
    return abs(est.mean - value) <= 5 * est.stderr + 2e-3 * abs(value) + 1e-3


@pytest.mark.parametrize(
    "spec,gamma,beta,B",
    [("tanh", None, None, 6), ("relu", "1.5", "0.5", 8), ("linear", None, None, 10),
     ("gelu", None, None, 7), ("alpha_relu:2", None, None, 16)],
)
def test_network_monte_carlo_agrees_with_derived(spec, gamma, beta, B):
    act = activation(spec, gamma=gamma, beta=beta)
    (an,) = analyze(act, [B], 12)
    fwd = network_forward_eigenvalues(act, B, samples=100_000, seed=5)
    for name, est in fwd.items():
        assert _close(est, float(an.numbers[name].value)), (name, est, an.numbers[name].value)
    rate = network_gradient_rate(act, B, samples=100_000, seed=6)
    assert _close(rate, float(an.numbers["gradient_rate"].value)), rate


def test_network_monte_carlo_sees_the_unstable_bsb1_point():
    """alpha_relu:2 at B = 16: lambda_L ~ 1.50 > 1, far beyond the sampling error."""
    act = activation("alpha_relu:2")
    (an,) = analyze(act, [16], 12)
    assert an.bsb1_stable is False
    est = network_forward_eigenvalues(act, 16, samples=100_000, seed=7)["lambda_L"]
    assert est.mean - 5 * est.stderr > 1
