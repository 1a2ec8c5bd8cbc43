"""docs/tutorial.ipynb runs top to bottom through the Python API (nbclient), on a small setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers_reliability import write_small_idx_dir

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_notebook_is_stored_without_outputs():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)


def test_the_tutorial_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("AELAB_TUTORIAL_EPOCHS", "1")
    monkeypatch.setenv("AELAB_TUTORIAL_COMPONENTS", "5")
    data = write_small_idx_dir(tmp_path / "data", n_train=2000, n_test=500)  # real digits, fewer
    monkeypatch.setenv("AELAB_TUTORIAL_DATA", str(data))
    monkeypatch.setenv("AELAB_TUTORIAL_OUT", str(tmp_path / "run"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5
    assert (tmp_path / "run" / "explain" / "explain.md").is_file()
    assert any("validation MSE per pixel" in o.get("text", "") for o in outputs)
