"""Every notebook: stored clean, and runs from a fresh kernel under the smoke profile."""

import json
import time

import nbformat
import pytest

from reid_utils import reproduce

NOTEBOOKS = reproduce.list_notebooks()


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(nb):
    data = json.loads(nb.read_text())
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    cells = data["cells"]
    for c in cells:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{nb.name}: outputs not stripped"
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and first.startswith(f"# {nb.name[:2]} ·"), (
        f"{nb.name}: first cell must be the '# NN · Title' markdown cell"
    )
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: exactly one cell tagged 'parameters'"
    assert "PROFILE" in "".join(tagged[0]["source"])


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_under_smoke(nb, tmp_path, shared_artifacts):
    env = {"REID_ARTIFACTS": str(shared_artifacts), "REID_FIGURES": str(tmp_path / "figures")}
    t0 = time.perf_counter()
    res = reproduce.run_notebook(nb, "smoke", tmp_path / "executed", env=env)
    print(f"{nb.name}: {time.perf_counter() - t0:.1f}s under smoke")
    executed = nbformat.read(res.output, as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    assert list((tmp_path / "figures").glob("*.png")), f"{nb.name} saved no figure"
