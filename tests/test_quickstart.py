"""examples/quickstart.ipynb runs from top to bottom, so it never rots."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # demo tiles, ten training steps, a prediction: about a minute on a CPU
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "the side-by-side figure is missing"
    assert "(4, 120, 120) float32" in text and "sar_agreement" in text
    assert "EPSG:32629 120 120 ('B2', 'B3', 'B4', 'B8')" in text
    assert (tmp_path / "quickstart-output" / "opt_v3.tif").is_file()
