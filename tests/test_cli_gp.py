"""``bnmft gp``: refusals of bad input (one line on stderr, exit status 2) and files."""

import re

import numpy as np
import pytest

from bnmft.cli import main


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def data(tmp_path):
    """16 train and 8 test points in 6 dimensions, one-hot labels of 3 classes."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 6))
    Xt = rng.standard_normal((8, 6))
    y = np.eye(3)[rng.integers(0, 3, 16)] - 1 / 3
    yt = np.eye(3)[rng.integers(0, 3, 8)] - 1 / 3
    paths = {}
    for name, arr in (("X", X), ("y", y), ("Xt", Xt), ("yt", yt)):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    return paths, (X, y, Xt, yt)


def refused(capsys, *argv, match):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "", (status, out, err)
    assert err.count("\n") == 1 and err.startswith("bnmft: error: "), err
    assert match in err, err
    return err


def base(paths, *extra):
    return ("gp", "relu", "--train", paths["X"], paths["y"], "--test", paths["Xt"], *extra)


def test_bad_input_is_one_line_and_exit_2(capsys, data, tmp_path):
    paths, (X, y, Xt, yt) = data

    def save(name, arr, **kw):
        p = tmp_path / name
        np.save(p, arr, **kw)
        return p

    # ragged lists become object arrays: refused by allow_pickle=False
    ragged = save("ragged.npy", np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    refused(capsys, "gp", "relu", "--train", ragged, paths["y"], "--test", paths["Xt"],
            "--batch-size", 8, match="is not a numeric .npy array")
    text = save("text.npy", np.array([["a", "b"], ["c", "d"]]))
    refused(capsys, "gp", "relu", "--train", text, paths["y"], "--test", paths["Xt"],
            "--batch-size", 8, match="X must be an array of real numbers")
    notnpy = tmp_path / "bad.npy"
    notnpy.write_text("1,2,3\n")
    refused(capsys, "gp", "relu", "--train", notnpy, paths["y"], "--test", paths["Xt"],
            "--batch-size", 8, match="is not a numeric .npy array")
    refused(capsys, "gp", "relu", "--train", tmp_path / "missing.npy", paths["y"], "--test",
            paths["Xt"], "--batch-size", 8, match="no such file")
    nan = X.copy()
    nan[5, 2] = np.nan
    refused(capsys, "gp", "relu", "--train", save("nan.npy", nan), paths["y"], "--test",
            paths["Xt"], "--batch-size", 8, match="X row 5 holds NaN")
    refused(capsys, *base(paths, "--batch-size", 5), match="16 rows, not a multiple of the "
                                                            "batch size 5")
    short = save("short.npy", Xt[:6])
    refused(capsys, "gp", "relu", "--train", paths["X"], paths["y"], "--test", short,
            "--batch-size", 8, match="Xt has 6 rows, not a multiple")
    flat = X.copy()
    flat[8:16] = X[8]
    refused(capsys, "gp", "relu", "--train", save("flat.npy", flat), paths["y"], "--test",
            paths["Xt"], "--batch-size", 8, match="batch 1 of X (rows 8-15) has zero variance")
    refused(capsys, "gp", "relu", "--train", tmp_path / "flat.npy", paths["y"], "--test",
            paths["Xt"], "--batch-size", 8, "--epsilon", "0.1",
            match="batch 1 of X (rows 8-15) has zero variance")
    refused(capsys, "gp", "relu", "--train", paths["X"], save("y15.npy", y[:15]), "--test",
            paths["Xt"], "--batch-size", 8, match="y has 15 rows, X has 16")
    refused(capsys, *base(paths, "--batch-size", 8, "--test-labels",
                          save("yt7.npy", yt[:7])), match="test labels have 7 rows")
    refused(capsys, *base(paths, "--batch-size", 8, "--test-labels",
                          save("yt2.npy", yt[:, :2])), match="test labels have 2 columns")
    refused(capsys, "gp", "relu", "--train", paths["X"], paths["y"], "--test",
            save("Xt5.npy", Xt[:, :5]), "--batch-size", 8,
            match="feature dimension mismatch: X has 6 columns, Xt has 5")
    refused(capsys, *base(paths, "--batch-size", 3), match="batch size must be >= 4")
    refused(capsys, *base(paths), match="--batch-size")
    refused(capsys, *base(paths, "--batch-size", 8, "--depth", 0), match="--depth must be")
    refused(capsys, *base(paths, "--batch-size", 8, "--jitter", "1"), match="--jitter")
    refused(capsys, *base(paths, "--batch-size", 8, "--jitter", "abc"), match="--jitter")
    refused(capsys, *base(paths, "--batch-size", 8, "--epsilon", "-1"), match="eps")
    refused(capsys, *base(paths, "--no-batchnorm", "--epsilon", "0.1"), match="--epsilon")
    refused(capsys, *base(paths, "--batch-size", 8, "--sigma-b", "0.1"), match="--sigma-b")
    refused(capsys, *base(paths, "--batch-size", 8, "--out", tmp_path / "mean.txt"),
            match="--out must end in .npy")
    refused(capsys, *base(paths, "--batch-size", 8, "--out", tmp_path), match="--out")
    npz = tmp_path / "X.npz"
    np.savez(npz, X=X)
    refused(capsys, "gp", "relu", "--train", npz, paths["y"], "--test", paths["Xt"],
            "--batch-size", 8, match="npz")
    refused(capsys, "gp", "nonsense(x", "--train", paths["X"], paths["y"], "--test",
            paths["Xt"], "--batch-size", 8, match="")


def test_library_refuses_the_same_input():
    import bnmft

    rng = np.random.default_rng(1)
    X, Xt = rng.standard_normal((8, 3)), rng.standard_normal((4, 3))
    with pytest.raises(bnmft.InvalidInput, match="Xt has 4 rows, not a multiple"):
        bnmft.gp("relu", X, np.ones(8), Xt, batch_size=8)
    with pytest.raises(bnmft.InvalidInput, match="depth"):
        bnmft.gp("relu", X, np.ones(8), Xt, batch_size=4, depth=0)
    with pytest.raises(bnmft.InvalidInput, match="y has 7 rows"):
        bnmft.gp("relu", X, np.ones(7), Xt, batch_size=4)
    with pytest.raises(bnmft.InvalidInput, match="real numbers"):
        bnmft.gp("relu", X + 0j, np.ones(8), Xt, batch_size=4)


# -- what the user sees, against independent computations ----------------------------------


def relu_nngp(X, depth, sigma_w=1.0, sigma_b=0.0):
    """The vanilla ReLU NNGP kernel written out from THEORY.md (arccosine kernel):
    K_0 = X X^T/d, K_{l+1} = sigma_w^2 sqrt(K_ii K_jj)/2 J(c_ij) + sigma_b^2."""
    K = X @ X.T / X.shape[1]
    for _ in range(depth):
        d = np.sqrt(np.diag(K))
        c = np.clip(K / np.outer(d, d), -1, 1)
        K = sigma_w**2 * np.outer(d, d) / 2 * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c) \
            / np.pi + sigma_b**2
    return K


def reference_posterior(K, n, y, jitter):
    """Posterior mean, variance and log p(y) by numpy.linalg.solve / slogdet."""
    A = K[:n, :n] + jitter * np.mean(np.diag(K[:n, :n])) * np.eye(n)
    Ks = K[n:, :n]
    mean = Ks @ np.linalg.solve(A, y)
    var = np.diag(K[n:, n:]) - np.einsum("ij,ji->i", Ks, np.linalg.solve(A, Ks.T))
    sign, logdet = np.linalg.slogdet(A)
    assert sign > 0
    k = 1 if y.ndim == 1 else y.shape[1]
    lml = -0.5 * np.sum(y * np.linalg.solve(A, y)) - 0.5 * k * logdet \
        - 0.5 * k * n * np.log(2 * np.pi)
    return mean, var, lml


def rounded(value, text):
    """``value`` correctly rounded to as many significant digits as ``text`` shows."""
    from bnmft.numerics import decimal_string

    mantissa = text.split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    return decimal_string(float(value), len(mantissa))


def test_vanilla_output_digit_by_digit(capsys, data, tmp_path):
    import json

    paths, (X, y, Xt, yt) = data
    mean_path, var_path = tmp_path / "m.npy", tmp_path / "v.npy"
    status, out, err = run(capsys, "gp", "relu", "--train", paths["X"], paths["y"], "--test",
                           paths["Xt"], "--test-labels", paths["yt"], "--no-batchnorm",
                           "--depth", 3, "--sigma-b", "0.1", "--jitter", "1e-8", "--out",
                           mean_path, "--variance-out", var_path, "--json")
    assert status == 0 and err == "", err
    row = json.loads(out)
    K = relu_nngp(np.vstack([X, Xt]), 3, sigma_b=0.1)
    mean, var, lml = reference_posterior(K, 16, y, 1e-8)
    m, v = np.load(mean_path), np.load(var_path)
    assert m.shape == (8, 3) and m.dtype == np.float64 and v.shape == (8,)
    np.testing.assert_allclose(m, mean, rtol=0, atol=1e-9 * np.abs(mean).max())
    np.testing.assert_allclose(v, var, rtol=0, atol=1e-9 * var.max())
    assert row["jitter"] == "1e-08" and row["factorisations"] == 1
    assert row["batchnorm"] is False and row["depth"] == 3 and row["outputs"] == 3
    assert int(row["mean_digits"]) >= 9
    for key, ref in (("min", mean.min()), ("max", mean.max()),
                     ("rms", np.sqrt(np.mean(mean**2)))):
        assert row["mean"][key] == rounded(ref, row["mean"][key]), key
        assert len(row["mean"][key].lstrip("-0.").replace(".", "")) >= 6
    for key, ref in (("min", var.min()), ("max", var.max()), ("mean", var.mean())):
        assert row["variance"][key] == rounded(ref, row["variance"][key]), key
    assert row["log_marginal_likelihood"] == rounded(lml, row["log_marginal_likelihood"])
    mse = np.mean((mean - yt) ** 2)
    assert row["test_mse"] == rounded(mse, row["test_mse"])
    correct = int(np.sum(np.argmax(mean, 1) == np.argmax(yt, 1)))
    assert row["test_correct"] == correct and float(row["test_accuracy"]) == correct / 8
    assert row["argmax_uncertain"] == 0
    assert row["test_accuracy_bounds"] == [row["test_accuracy"]] * 2
    assert row["out"] == str(mean_path)


@pytest.mark.slow  # about 40 s
def test_batchnorm_text_output_and_files(capsys, data, tmp_path):
    from bnmft.numerics.kernel import kernel_matrix

    paths, (X, y, Xt, yt) = data
    mean_path = tmp_path / "sub" / "m.npy"
    status, out, err = run(capsys, "gp", "relu", "--train", paths["X"], paths["y"], "--test",
                           paths["Xt"], "--test-labels", paths["yt"], "--batch-size", 4,
                           "--depth", 2, "--kernel-tol", "1e-7", "--out", mean_path)
    assert status == 0 and err == "", err
    K = kernel_matrix("relu", np.vstack([X, Xt]), 4, depth=2, tol=1e-7)
    mean, var, lml = reference_posterior(K, 16, y, 1e-10)
    np.testing.assert_allclose(np.load(mean_path), mean, atol=1e-7 * np.abs(mean).max())
    lines = out.splitlines()
    assert lines[0] == ("gp relu, depth 2, batchnorm, B = 4, eps = 0, sigma_w = 1: 16 train, "
                        "8 test, 3 output(s)")
    assert lines[2].split()[1] == "1e-10"  # the jitter used
    shown = dict(re.findall(r"(min|max|rms) (\S+?),?(?= |$)", lines[4]))
    for key, ref in (("min", mean.min()), ("max", mean.max()),
                     ("rms", np.sqrt(np.mean(mean**2)))):
        assert shown[key] == rounded(ref, shown[key]), (key, lines[4])
    assert lines[3].split()[1] == rounded(lml, lines[3].split()[1])
    correct = int(np.sum(np.argmax(mean, 1) == np.argmax(yt, 1)))
    assert f"test_accuracy            {correct / 8:.6g} ({correct}/8;" in out
    assert lines[-1] == f"  wrote {mean_path}"
    assert [p.name for p in mean_path.parent.iterdir()] == ["m.npy"]  # no temp file left


@pytest.mark.slow  # about 45 s
def test_test_batches_are_their_own_and_their_batch_mates_matter():
    """Test inputs identical to the training batches are interpolated (their kernel rows are
    the training ones); the same points regrouped with other batch-mates are not, and the
    kernel between a training batch and a test batch is the two batches' own cross block."""
    import bnmft
    from bnmft.numerics.kernel import kernel_matrix

    rng = np.random.default_rng(7)
    X = rng.standard_normal((8, 5))
    y = rng.standard_normal(8)
    same = bnmft.gp("relu", X, y, X, batch_size=4, depth=2, jitter=1e-12, tol=1e-8)
    np.testing.assert_allclose(same.mean, y, atol=1e-5)
    assert same.variance.max() < 1e-6
    mixed = X[[0, 1, 4, 5, 2, 3, 6, 7]]  # each point keeps one old batch-mate of three
    moved = bnmft.gp("relu", X, y, mixed, batch_size=4, depth=2, jitter=1e-12, tol=1e-8)
    assert np.min(np.abs(moved.mean - y[[0, 1, 4, 5, 2, 3, 6, 7]])) > 1e-3
    assert moved.variance.min() > 1e-4
    K = kernel_matrix("relu", np.vstack([X, mixed]), 4, depth=2, tol=1e-8)
    pair = kernel_matrix("relu", np.vstack([X[4:], mixed[:4]]), 4, depth=2, tol=1e-8)
    np.testing.assert_allclose(K[4:8, 8:12], pair[:4, 4:], rtol=0, atol=1e-9)


def test_a_posterior_without_a_correct_digit_is_not_printed_nor_written(capsys, data,
                                                                        tmp_path,
                                                                        monkeypatch):
    """A kernel that claims only 1e-2 relative accuracy (the real kernel, its claimed error
    widened) with no jitter leaves no correct digit in the mean: null, a line on stderr per
    quantity, exit status 1, and --out not written."""
    import json

    import bnmft.numerics.gp as gp
    from bnmft.numerics.kernel import KernelResult

    real = gp.kernels_by_depth

    def widened(*args, **kw):
        out = real(*args, **kw)
        for L, kr in out.items():
            d = np.sqrt(np.diag(kr.matrix))
            out[L] = KernelResult(kr.matrix, 1e-2 * np.outer(d, d), kr.route)
        return out

    monkeypatch.setattr(gp, "kernels_by_depth", widened)
    paths, _ = data
    target = tmp_path / "m.npy"
    status, out, err = run(capsys, *base(paths, "--batch-size", 4, "--depth", 2,
                                         "--kernel-tol", "1e-6", "--jitter", "0", "--json",
                                         "--out", target))
    row = json.loads(out)
    assert status == 1 and row["mean"] == {"min": None, "max": None, "rms": None}
    assert row["kernel_accuracy"] == "0.01"
    assert row["mean_digits"] == "0" and row["out"] is None and not target.exists()
    assert "bnmft: not converged at depth 2: posterior mean: no correct digit" in err
    assert f"bnmft: not written: {target}" in err


@pytest.mark.slow  # about 2.5 min
def test_workers_give_the_same_posterior(capsys, data, tmp_path):
    """The block pairs in two worker processes: the same mean, bit for bit, as one process;
    a bad worker count is one line, exit 2."""
    paths, _ = data
    means = []
    for workers in (1, 2):
        out = tmp_path / f"mean{workers}.npy"
        status, _, err = run(capsys, *base(paths, "--batch-size", 4, "--depth", 2, "--out",
                                           out, "--workers", workers, "--quiet"))
        assert status == 0, err
        means.append(np.load(out))
    assert np.array_equal(means[0], means[1])
    refused(capsys, *base(paths, "--batch-size", 4, "--workers", 0), match="--workers")
