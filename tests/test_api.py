"""The public Python API: names, subpackages, and the README's example."""

import importlib
import re
from pathlib import Path

import mpmath
import sympy as sp

import bnmft


def test_subpackages_are_not_shadowed():
    for name in ("bnmft.derive.activation", "bnmft.numerics.sphere", "bnmft.codegen"):
        mod = importlib.import_module(name)
        assert mod.__name__ == name
    import bnmft.derive.bsb1 as bsb1  # attribute access through the package chain

    assert hasattr(bsb1, "moment_forms")


def test_public_api_relu_limit_and_number():
    act = bnmft.activation("relu")
    d = bnmft.derivation(act)
    assert sp.simplify(d.closed["gradient_rate"].limit() - sp.pi / (sp.pi - 1)) == 0
    (an,) = bnmft.analyze(act, [8], digits=25)
    rate = an.numbers["gradient_rate"]
    assert rate.digits >= 25
    # THEORY.md, checked value: ReLU gradient rate at B = 8 (printed to 15 digits)
    assert abs(mpmath.mpf(rate.value) - mpmath.mpf("1.78818997665874")) < 1e-14


def test_readme_python_example_runs():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # the project's own documentation
    rate = namespace["rate"]
    # THEORY.md's ReLU closed form (Thm 8 at alpha = 1) at 60 digits, B = 32: the Number the
    # README shows must carry every digit it claims (an mpf of 51 bits once claimed 45)
    with mpmath.workdps(60):
        c = -1 / mpmath.mpf(31)
        J = (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c) / mpmath.pi
        Jp = (mpmath.pi - mpmath.acos(c)) / mpmath.pi
        ref = (Jp + 31) / (29 * (1 - J)) - 1 / mpmath.mpf(29)
        claimed = min(int(rate.digits), 55)
        assert claimed >= 30
        assert abs(rate.value - ref) <= abs(ref) * mpmath.mpf(10) ** -claimed
        assert rate.text(30) == mpmath.nstr(ref, 30, strip_zeros=False)
    assert namespace["rep"].verified
