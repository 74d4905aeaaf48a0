"""The committed notebooks: a plain ``default`` run writes each one back, executed and cleaned for git.

``reproduce.NOTEBOOK_DIR`` (the committed folder) is pointed at a folder of fake notebooks in
``tmp_path``; the write-back, the runs that must not write back, and the two public helpers
``source_sha256`` / ``clean_for_commit`` are checked.
"""

import copy

import nbformat
import pytest
from test_reproduce import make_notebook

from reid_utils import reproduce


@pytest.fixture
def committed(tmp_path, monkeypatch):
    """A committed-notebooks folder in tmp_path; runs count their executions in ``runs.txt``."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setenv("REID_OVERRIDES", "")
    for var in ("REID_PROFILE", "REID_DATASET", "REID_DATA_ROOT"):
        monkeypatch.delenv(var, raising=False)
    counter = f"import pathlib\np = pathlib.Path({str(tmp_path / 'runs.txt')!r})\n"
    counter += "n = len(p.read_text()) + 1 if p.exists() else 1\np.write_text('x' * n)\nprint('run', n)"
    make_notebook(nbdir / "00_a.ipynb", counter, "PROFILE")
    return nbdir


def _run(tmp_path, *extra):
    return reproduce.main(["--out", str(tmp_path / "executed"), *extra])


def test_default_run_writes_the_notebook_back_cleaned(committed, tmp_path):
    src = committed / "00_a.ipynb"
    before = nbformat.read(src, as_version=4)
    assert _run(tmp_path, "--profile", "default") == 0

    executed = nbformat.read(tmp_path / "executed" / "00_a.ipynb", as_version=4)  # the executed copy, first
    assert "papermill" in executed.metadata
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    nb = nbformat.read(src, as_version=4)
    nbformat.validate(nb)
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in before.cells]
    assert "papermill" not in nb.metadata and nb.metadata["kernelspec"]["name"] == "python3"
    assert not [c for c in nb.cells if {"papermill", "execution"} & set(c.metadata)]
    reid = nb.metadata["reid"]
    assert set(reid) == {"profile", "source_sha256", "seconds"} and reid["profile"] == "default"
    assert reid["source_sha256"] == reproduce.source_sha256(before) == reproduce.source_sha256(executed)
    assert isinstance(reid["seconds"], float) and reid["seconds"] > 0 and round(reid["seconds"], 1) == reid["seconds"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 3, 4]  # [2] was papermill's injected cell, removed
    assert code[1].outputs[0]["text"] == "run 1\n" and code[2].outputs[0]["data"]["text/plain"] == "'default'"

    assert _run(tmp_path, "--only", "00") == 0  # re-run on the executed notebook: outputs replaced
    again = nbformat.read(src, as_version=4)
    assert [c for c in again.cells if c.cell_type == "code"][1].outputs == [
        nbformat.v4.new_output("stream", name="stdout", text="run 2\n")
    ]
    assert not [c for c in again.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert again.metadata["reid"]["source_sha256"] == reid["source_sha256"]


@pytest.mark.parametrize(
    "args, env, note",
    [
        (["--profile", "smoke"], {}, False),
        ([], {"REID_PROFILE": "smoke"}, False),
        (["--set", "train.iterations=3"], {}, True),
        ([], {"REID_OVERRIDES": '{"train": {"iterations": 3}}'}, True),
        (["--param", "X=1"], {}, True),
        ([], {"REID_DATASET": "prid2011"}, True),
        (["--notebooks", "COPY"], {}, False),
    ],
    ids=["smoke", "env-smoke", "set", "env-overrides", "param", "env-dataset", "other-folder"],
)
def test_other_runs_leave_the_committed_notebooks_alone(committed, tmp_path, monkeypatch, capsys, args, env, note):
    """Only a plain default run of the committed folder writes back; a default run of the committed
    folder that does not says why (stdout)."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    other = tmp_path / "copy"  # a copy of the committed folder elsewhere: not written either
    other.mkdir()
    (other / "00_a.ipynb").write_bytes((committed / "00_a.ipynb").read_bytes())
    args = [str(other) if a == "COPY" else a for a in args]
    before = {p: p.read_bytes() for d in (committed, other) for p in d.iterdir()}
    assert _run(tmp_path, "--only", "00", *args) == 0
    assert {p: p.read_bytes() for d in (committed, other) for p in d.iterdir()} == before
    assert (tmp_path / "executed" / "00_a.ipynb").exists()
    assert ("the committed notebooks are left unchanged" in capsys.readouterr().out) == note


def test_a_failed_notebook_is_not_written_back(committed, tmp_path):
    make_notebook(committed / "01_bad.ipynb", "raise RuntimeError('no')")
    make_notebook(committed / "02_never.ipynb", "x = 1")
    bad, never = (committed / n for n in ("01_bad.ipynb", "02_never.ipynb"))
    before = {p: p.read_bytes() for p in (bad, never)}
    assert _run(tmp_path, "--profile", "default") == 1
    assert {p: p.read_bytes() for p in (bad, never)} == before
    first = nbformat.read(committed / "00_a.ipynb", as_version=4)  # it ran before the failure: written back
    assert first.metadata["reid"]["profile"] == "default"


# -- source_sha256 / clean_for_commit ---------------------------------------------------------
def _executed_dict():
    """An executed notebook as papermill leaves it, as a plain dict (sources as lists of lines)."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "papermill": {"parameters": {"PROFILE": "default"}, "duration": 1.5}},
        "cells": [
            {"id": "a", "cell_type": "markdown", "metadata": {}, "source": ["# 00 · t"]},
            {"id": "b", "cell_type": "code", "metadata": {"tags": ["parameters"], "papermill": {"status": "completed"}},
             "execution_count": 1, "outputs": [], "source": ["PROFILE = 'smoke'\n", "N = 2"]},
            {"id": "c", "cell_type": "code", "metadata": {"tags": ["injected-parameters"]},
             "execution_count": 2, "outputs": [], "source": "# Parameters\nPROFILE = \"default\"\n"},
            {"id": "d", "cell_type": "code", "metadata": {"execution": {"iopub.status.busy": "2026-01-01T00:00:00"},
                                                          "papermill": {"status": "completed"}},
             "execution_count": 3, "source": "print(N)",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "2\n"}]},
        ],
    }  # fmt: skip


def test_source_sha256_sees_only_the_cells_types_and_sources():
    raw = _executed_dict()
    h = reproduce.source_sha256(raw)
    assert len(h) == 64 and h == reproduce.source_sha256(nbformat.from_dict(copy.deepcopy(raw)))
    same = copy.deepcopy(raw)
    del same["cells"][2]  # the injected-parameters cell
    same["metadata"] = {}
    same["cells"][3 - 1].update(outputs=[], execution_count=None, metadata={"tags": ["x"]})
    same["cells"][1]["source"] = "PROFILE = 'smoke'\nN = 2"  # the same source, as one string
    assert reproduce.source_sha256(same) == h
    for edit in (
        lambda nb: nb["cells"][3].update(source="print(N) "),
        lambda nb: nb["cells"][0].update(cell_type="raw"),
        lambda nb: nb["cells"].insert(0, nb["cells"].pop(3)),
        lambda nb: nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": ""}),
        lambda nb: nb["cells"][2]["metadata"].update(tags=[]),  # no longer the injected cell: it counts
    ):
        changed = copy.deepcopy(raw)
        edit(changed)
        assert reproduce.source_sha256(changed) != h
    with pytest.raises(TypeError, match="nb: expected a notebook"):
        reproduce.source_sha256({"cell": []})


def test_clean_for_commit_drops_papermill_and_keeps_outputs():
    raw = _executed_dict()
    kept = copy.deepcopy(raw)
    nb = reproduce.clean_for_commit(raw, 12.345, "default")
    assert raw == kept  # the input is not changed
    nbformat.validate(nb)
    assert [c.id for c in nb.cells] == ["a", "b", "d"]
    assert nb.metadata == {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "reid": {"profile": "default", "source_sha256": reproduce.source_sha256(raw), "seconds": 12.3},
    }
    assert [c.metadata for c in nb.cells] == [{}, {"tags": ["parameters"]}, {}]
    assert nb.cells[2].execution_count == 3 and nb.cells[2].outputs[0]["text"] == "2\n"
    with pytest.raises(ValueError, match="seconds"):
        reproduce.clean_for_commit(raw, -1, "default")
    with pytest.raises(ValueError, match="profile"):
        reproduce.clean_for_commit(raw, 1.0, "dflt")
    with pytest.raises(TypeError, match="nb"):
        reproduce.clean_for_commit([], 1.0, "default")
