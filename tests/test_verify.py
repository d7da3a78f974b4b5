"""bnmft verify: every route against independent references.

The default run checks one activation of each kind at a few batch sizes; the full list of
the issue (30 digits at the default batch sizes 4, 6, 8, 32, 1000, 10^6) runs with
``python -m pytest -m slow``.
"""

import pytest

from bnmft.derive.activation import activation
from bnmft.pipeline import verify


def _assert_all_ok(checks):
    bad = [(c.quantity, c.batch_size, c.route, c.digits, c.note) for c in checks if not c.ok]
    assert not bad, bad
    routes = {c.route for c in checks}
    references = {c.reference_route for c in checks}
    assert len(routes) >= 2 and not routes & references  # two routes checked against a third


@pytest.mark.parametrize(
    "spec,gamma,beta,sizes",
    [
        ("sin", None, None, (5, 40)),  # smooth: fast routes, Gegenbauer, Cartesian
        ("relu", "1.5", "0.5", (6, 33)),  # kinked, not homogeneous: fast route, Cartesian
        ("leaky_relu:0.2", None, None, (5,)),  # closed forms, generated code, brute force
    ],
)
def test_verify_one_of_each_kind(spec, gamma, beta, sizes):
    _assert_all_ok(verify(activation(spec, gamma=gamma, beta=beta), sizes, 20))


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec,gamma,beta",
    [
        ("relu", None, None), ("leaky_relu", None, None), ("alpha_relu:1.5", None, None),
        ("alpha_relu:2", None, None), ("linear", None, None), ("tanh", None, None),
        ("erf", None, None), ("sin", None, None), ("gelu", None, None), ("swish", None, None),
        ("softplus", None, None), ("tanh", "2", "0.1"), ("relu", "1.5", "0.5"),
    ],
)
def test_verify_30_digits(spec, gamma, beta):
    _assert_all_ok(verify(activation(spec, gamma=gamma, beta=beta), digits=30))
