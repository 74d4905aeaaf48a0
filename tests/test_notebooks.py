"""Every notebook: stored executed by the default profile, and re-run from a fresh kernel by nbval under smoke.

The notebooks are committed with their outputs (figures inline), as written by
``python -m reid_utils.reproduce --profile default``, which records
``metadata.reid = {"profile": "default", "source_sha256": ..., "seconds": ...}``.
The stored tests check that those outputs belong to the committed source
(``reproduce.source_sha256``); the nbval tests re-run every notebook (then every
``notebooks/solutions/*.ipynb``) under the ``smoke`` profile with
``pytest --nbval-lax``: any cell that raises fails, and only the cells marked
``# NBVAL_CHECK_OUTPUT`` (the "worked by hand" toy examples, whose outputs do not
depend on the profile) must reproduce their stored outputs.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from reid_utils import reproduce

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = reproduce.NOTEBOOK_DIR
NOTEBOOKS = reproduce.list_notebooks()
SOLUTIONS = sorted((NOTEBOOK_DIR / "solutions").glob("*.ipynb"))
MAX_STORED_BYTES = 15_000_000  # every notebooks/**/*.ipynb together, outputs included

# nbval run of one notebook (smoke): per-cell and kernel-start limits, and a limit on the whole
# run that stays below the pytest-timeout of the test (pyproject: 900 s), so a hung run is
# interrupted here (SIGINT: nbval shuts its kernel down) with its output shown.
NBVAL_CELL_TIMEOUT_S = 600
NBVAL_KERNEL_STARTUP_S = 120
NBVAL_RUN_TIMEOUT_S = 840
OUTPUT_TAIL_CHARS = 6000


def _rel(p: Path) -> str:
    return p.relative_to(NOTEBOOK_DIR).as_posix()


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _check_marked(cell) -> bool:
    lines = cell.source.lstrip().splitlines()
    return bool(lines) and lines[0].strip() == "# NBVAL_CHECK_OUTPUT"


def _skip_marked(cell) -> bool:
    return any(ln.strip() == "# NBVAL_SKIP" for ln in cell.source.splitlines())


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"


# --- stored: executed by the default profile ------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_executed_by_default_profile(path):
    nb = nbformat.read(path, as_version=4)
    name, nn = path.name, path.name[:2]
    rerun = f"run python -m reid_utils.reproduce --profile default --only {nn}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{name}: kernelspec name must be python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {nn} ·"), (
        f"{name}: first cell must be the '# {nn} · Title' markdown cell"
    )
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell tagged 'parameters', found {len(tagged)}"
    assert "PROFILE" in tagged[0].source, f"{name}: the parameters cell must set PROFILE"

    reid = nb.metadata.get("reid", {})
    assert reid.get("profile") == "default", (
        f"{name}: stored outputs are not from the default profile (metadata reid = {reid}); {rerun}"
    )
    assert reid.get("source_sha256") == reproduce.source_sha256(nb), (
        f"{name}: source changed since it was executed; {rerun}"
    )
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        assert c.get("execution_count") is not None, f"{name}: code cell {i} was not executed; {rerun}"
        errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name}: code cell {i} stored an error: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        if _check_marked(c):  # nbval compares these: an empty stored output would check nothing
            assert c.get("outputs"), f"{name}: code cell {i} is marked # NBVAL_CHECK_OUTPUT but stored no output"


def test_stored_notebooks_size():
    files = sorted(p for p in NOTEBOOK_DIR.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    sizes = {_rel(p): p.stat().st_size for p in files}
    total = sum(sizes.values())
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    print(
        f"notebooks/**/*.ipynb: {len(files)} files, {total / 1e6:.2f} MB; largest "
        + ", ".join(f"{n} {s / 1e6:.2f} MB" for n, s in biggest)
    )
    assert total < MAX_STORED_BYTES, (
        f"stored notebooks take {total / 1e6:.2f} MB (limit {MAX_STORED_BYTES / 1e6:.0f} MB); largest: {biggest}"
    )


# --- nbval: each notebook re-run under smoke, in order -----------------------------------
def nbval_command(path: Path) -> list[str]:
    """The nbval run of one notebook: this venv's python as the kernel (not the kernelspec
    stored in the notebook), outputs compared only in ``# NBVAL_CHECK_OUTPUT`` cells, and no
    ``.pytest_cache`` written into the repo. nbval starts the kernel in the notebook's folder."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        f"--nbval-cell-timeout={NBVAL_CELL_TIMEOUT_S}",
        f"--nbval-kernel-startup-timeout={NBVAL_KERNEL_STARTUP_S}",
        "-p",
        "no:cacheprovider",
        "-q",
        "--color=no",
        str(path),
    ]


def run_nbval(path: Path, env: dict, timeout: float = NBVAL_RUN_TIMEOUT_S) -> tuple[int, str, float]:
    """Run :func:`nbval_command` in a subprocess; returns (exit code, stdout+stderr, seconds).

    On ``timeout`` the run gets SIGINT (pytest tears down, nbval stops its kernel), then SIGKILL.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        nbval_command(path),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        out = f"{out}\n[nbval run interrupted after {timeout:.0f} s]"
        return -1, out, time.perf_counter() - t0
    return proc.returncode, out, time.perf_counter() - t0


def smoke_env(artifacts: Path, figures: Path) -> dict:
    """The environment of an nbval run: ``$REID_PROFILE`` overrides the notebook's ``PROFILE``
    parameter (``config.resolve_profile``); artifacts in the session's shared smoke cache."""
    env = os.environ.copy()
    env.pop("MPLBACKEND", None)  # conftest's Agg: the kernel uses its own inline backend, as a reader's does
    env.pop("REID_OVERRIDES", None)
    env.update(
        {
            "REID_PROFILE": "smoke",
            "REID_ARTIFACTS": str(artifacts),
            "REID_FIGURES": str(figures),
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _passed(output: str) -> int | None:
    summary = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    if not summary:
        return None
    m = re.search(r"(\d+) passed", summary[-1])
    return int(m[1]) if m else 0


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=_rel)
def test_notebook_runs_under_nbval_smoke(path, tmp_path, shared_artifacts):
    """Main notebooks 00..08 in order (later ones reuse the smoke artifacts cached by earlier
    ones in ``shared_artifacts``), then the solutions."""
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    expected = sum(not _skip_marked(c) for c in cells)
    checked = sum(_check_marked(c) for c in cells)
    figures = tmp_path / "figures"
    rc, out, secs = run_nbval(path, smoke_env(shared_artifacts, figures))
    print(f"{_rel(path)}: nbval (smoke) {secs:.1f} s, {len(cells)} code cells, {checked} marked # NBVAL_CHECK_OUTPUT")
    tail = re.sub(r"\x1b\[[0-9;]*m", "", out)[-OUTPUT_TAIL_CHARS:]  # the kernel's tracebacks are coloured
    assert rc == 0, f"{_rel(path)}: nbval exited with {rc}; end of its output:\n{tail}"
    assert _passed(out) == expected, (
        f"{_rel(path)}: nbval passed {_passed(out)} cells, expected {expected}; end of its output:\n{tail}"
    )
    assert not (shared_artifacts / "default").exists(), (
        f"{_rel(path)}: artifacts of the default profile were written: $REID_PROFILE=smoke was not honoured"
    )
    if path.parent == NOTEBOOK_DIR:
        assert list(figures.glob("*.png")), f"{path.name} saved no figure under $REID_FIGURES"
