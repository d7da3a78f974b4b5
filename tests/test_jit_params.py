"""The loader's convention for parameterised kernels (``NAME_QTY_p``, ``NAME_all_p``): the
parameters are arrays broadcast against ``B``, a NULL pointer means the module's default."""

import numpy as np
import pytest

from bnmft.codegen.errors import CodegenError
from bnmft.codegen.jit import load_c

HEADER = """\
#include <stddef.h>
void toy_f(size_t n, const double *B, double *out);
void toy_g(size_t n, const double *B, double *out);
void toy_all(size_t n, const double *B,
             double *f,
             double *g);
void toy_f_p(size_t n, const double *B, const double *eps, const double *sigma_w, double *out);
void toy_g_p(size_t n, const double *B, const double *eps, const double *sigma_w, double *out);
void toy_all_p(size_t n, const double *B, const double *eps, const double *sigma_w,
               double *f,
               double *g);
"""

SOURCE = """\
#include "toy.h"
#include <math.h>
static void one(double B, double eps, double sw, double *f, double *g) {
    if (f) *f = sw * sw * B / (1.0 + eps);
    if (g) *g = sqrt(B) + eps;
}
void toy_all_p(size_t n, const double *B, const double *eps, const double *sigma_w,
               double *f, double *g) {
    for (size_t i = 0; i < n; ++i)
        one(B[i], eps ? eps[i] : 0.0, sigma_w ? sigma_w[i] : 1.0,
            f ? f + i : NULL, g ? g + i : NULL);
}
void toy_all(size_t n, const double *B, double *f, double *g) {
    toy_all_p(n, B, NULL, NULL, f, g);
}
void toy_f_p(size_t n, const double *B, const double *eps, const double *sigma_w, double *out) {
    toy_all_p(n, B, eps, sigma_w, out, NULL);
}
void toy_g_p(size_t n, const double *B, const double *eps, const double *sigma_w, double *out) {
    toy_all_p(n, B, eps, sigma_w, NULL, out);
}
void toy_f(size_t n, const double *B, double *out) { toy_f_p(n, B, NULL, NULL, out); }
void toy_g(size_t n, const double *B, double *out) { toy_g_p(n, B, NULL, NULL, out); }
"""


@pytest.fixture(scope="module")
def toy():
    return load_c({"toy.c": SOURCE, "toy.h": HEADER}, "toy")


def test_parameters_are_read_from_the_header(toy):
    assert toy.params == ("eps", "sigma_w")
    assert toy.names == ("f", "g")


def test_defaults_without_parameters(toy):
    B = np.array([4.0, 9.0, 1e6])
    np.testing.assert_array_equal(toy.f(B), B)
    np.testing.assert_array_equal(toy.g(B), np.sqrt(B))


def test_parameters_broadcast_against_B(toy):
    B = np.array([4.0, 16.0, 100.0])[:, None]  # (3, 1)
    eps = np.array([0.0, 0.5])  # (2,)
    out = toy.f(B, eps=eps, sigma_w=2.0)
    assert out.shape == (3, 2)
    np.testing.assert_allclose(out, 4.0 * B / (1.0 + eps), rtol=1e-15)
    both = toy.all(B, eps=eps)
    np.testing.assert_allclose(both["f"], B / (1.0 + eps) + 0 * eps, rtol=1e-15)
    np.testing.assert_allclose(both["g"], np.sqrt(B) + eps, rtol=1e-15)
    # None is the default, and a 0-d result stays 0-d
    assert toy.g(9.0, eps=None).shape == ()
    assert float(toy.g(9.0, eps=0.25)) == 3.25


def test_non_contiguous_parameters(toy):
    eps = np.linspace(0, 1, 10)[::3]
    B = np.full(4, 8.0)
    np.testing.assert_allclose(toy.f(B, eps=eps), 8.0 / (1.0 + eps), rtol=1e-15)


def test_unknown_parameter_is_refused(toy):
    with pytest.raises(TypeError, match="no parameter 'gamma'"):
        toy.f(4.0, gamma=2.0)
    with pytest.raises(ValueError):
        toy.f(np.ones(3), eps=np.ones(2))  # shapes that do not broadcast


def test_inconsistent_parameter_lists_are_refused():
    header = HEADER.replace("const double *eps, const double *sigma_w, double *out);\nvoid toy_g_p",
                            "const double *eps, double *out);\nvoid toy_g_p")
    with pytest.raises(CodegenError, match="same parameters"):
        load_c({"toy.c": SOURCE, "toy.h": header}, "toy")


def test_exported_package_loader_follows_the_same_convention(tmp_path, monkeypatch):
    """The ctypes loader rendered into exported packages reads the same prototypes."""
    import importlib
    import sys

    from bnmft.codegen.export import _ENV

    pkg = tmp_path / "toypkg"
    (pkg / "c").mkdir(parents=True)
    (pkg / "c" / "toy.c").write_text(SOURCE)
    (pkg / "c" / "toy.h").write_text(HEADER)
    (pkg / "__init__.py").write_text("MODULES = {'toy': ('f', 'g')}\n")
    (pkg / "loader.py").write_text(
        _ENV.get_template("loader.py.jinja").render(version="0", package="toypkg")
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        loader = importlib.import_module("toypkg.loader")
        mod = loader.load_c("toy")
        assert mod.params == ("eps", "sigma_w")
        B = np.array([4.0, 25.0])[:, None]
        eps = np.array([0.0, 0.5, 2.0])
        np.testing.assert_allclose(mod.f(B, sigma_w=3.0, eps=eps), 9.0 * B / (1.0 + eps),
                                   rtol=1e-15)
        np.testing.assert_array_equal(mod.g(B), np.sqrt(B))
        both = mod.all(B, eps=eps)
        assert both["g"].shape == (2, 3)
        np.testing.assert_allclose(both["g"], np.sqrt(B) + eps, rtol=1e-15)
        with pytest.raises(TypeError, match="no parameter 'beta'"):
            mod.f(B, beta=1.0)
    finally:
        for name in [m for m in sys.modules if m.startswith("toypkg")]:
            del sys.modules[name]
