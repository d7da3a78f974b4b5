"""Notebooks run end to end at a small size (their SIZE parameter) without errors."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


#: the two that take over 30 s at SIZE = 1 (training on MNIST; the trainable-depth scan)
SLOW = {"02_trainability_mnist.ipynb", "04_trainable_depth_theory.ipynb"}


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW
                                  else p for p in NOTEBOOKS], ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_at_small_size(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    size_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("SIZE =")]
    assert size_cells, "every notebook has a SIZE parameter cell"
    size_cells[0].source = "SIZE = 1"
    (tmp_path / "figures").mkdir()
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError if any cell fails
    assert list((tmp_path / "figures").glob("*.png"))
