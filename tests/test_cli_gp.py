"""``bnmft gp``: refusals of bad input (one line on stderr, exit status 2) and files."""

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
