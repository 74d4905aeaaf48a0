"""``python -m reid_utils.reproduce`` on tiny fake notebooks: order, profile choice, failures, a clean stderr.

The write-back of the committed notebooks is tested in ``test_reproduce_commit.py``.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from reid_utils import reproduce
from reid_utils.config import PROFILES

ROOT = Path(__file__).resolve().parent.parent

# reproduce: FAILED in <notebook>: code cell [N] starting `<first line>` raised <Error>: <message>
#     (executed copy: <path>)   -- all on one line
FAILED = re.compile(
    r"reproduce: FAILED in (?P<nb>\S+\.ipynb): code cell \[(?P<n>[^\]]+)\] starting `(?P<first>[^`]*)` "
    r"raised (?P<ename>\w+): (?P<evalue>.*) \(executed copy: (?P<copy>.+)\)"
)


def make_notebook(path, *sources, params="PROFILE = 'default'"):
    """A numbered notebook as the project writes them: title cell, one ``parameters`` cell, code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.name[:2]} · t"), cell]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def stderr_lines(err: str) -> list[str]:
    """Lines of a run's stderr, without the progress bar's (``\\r``-separated) updates."""
    lines = (ln.strip() for ln in err.replace("\r", "\n").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("notebooks (")]


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """No profile, overrides or dataset from the caller's environment (main exports $REID_OVERRIDES)."""
    monkeypatch.setenv("REID_OVERRIDES", "")
    for var in ("REID_PROFILE", "REID_DATASET", "REID_DATA_ROOT"):
        monkeypatch.delenv(var, raising=False)


def test_runner_runs_in_order_and_passes_the_profile(tmp_path, capsys):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    marker = tmp_path / "order.txt"
    for name in ["01_b.ipynb", "00_a.ipynb"]:
        make_notebook(
            nbdir / name,
            f"import os\nopen({str(marker)!r}, 'a').write({name[:2]!r} + PROFILE + os.environ['REID_PROFILE'] + ',')",
        )
    (nbdir / "notes.ipynb").write_text("not a numbered notebook, ignored")
    rc = reproduce.main(["--profile", "smoke", "--notebooks", str(nbdir), "--out", str(tmp_path / "ex")])
    assert rc == 0
    assert marker.read_text() == "00smokesmoke,01smokesmoke,"
    assert (tmp_path / "ex" / "00_a.ipynb").exists() and (tmp_path / "ex" / "timings.csv").exists()


def test_profile_comes_from_the_environment_unless_the_flag_is_given(tmp_path, monkeypatch):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    marker = tmp_path / "profile.txt"
    write = f"open({str(marker)!r}, 'a').write(PROFILE + os.environ['REID_PROFILE'] + ',')"
    make_notebook(nbdir / "00_a.ipynb", "import os\n" + write)
    argv = ["--notebooks", str(nbdir), "--out", str(tmp_path / "ex")]
    monkeypatch.setenv("REID_PROFILE", "smoke")
    assert reproduce.main(argv) == 0
    monkeypatch.setenv("REID_PROFILE", "paper")
    assert reproduce.main(argv + ["--profile", "smoke", "--set", "train.iterations=1"]) == 0  # checked as smoke
    assert marker.read_text() == "smokesmoke,smokesmoke,"
    assert os.environ["REID_PROFILE"] == "paper"  # main leaves the caller's variable as it was


def test_bad_profile_in_the_environment_is_one_clear_line(tmp_path):
    env = {**os.environ, "REID_PROFILE": "smok", "REID_OVERRIDES": "", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "reid_utils.reproduce", "--notebooks", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert stderr_lines(proc.stderr) == [
        f"reproduce: $REID_PROFILE='smok' is not a profile: expected one of {', '.join(PROFILES)}"
    ]
    proc = subprocess.run(cmd + ["--profile", "smoke"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "no notebooks found" in proc.stderr  # the flag wins: the variable is not read


@pytest.mark.parametrize(
    "cells, first, ename, evalue",
    [
        (["y = 2", "raise ValueError('broken\\non purpose')"], "raise ValueError('broken\\non purpose')",
         "ValueError", "broken on purpose"),
        (["y = 2", "import os\nos._exit(1)"], "import os", "DeadKernelError", "Kernel died"),
        (["y = 2", "\nimport time\ntime.sleep(60)"], "import time", "CellTimeoutError",
         "A cell timed out while it was being executed, after 3 seconds."),
    ],
    ids=["raises", "dead-kernel", "timeout"],
)  # fmt: skip
def test_a_failure_is_one_line_naming_notebook_and_cell(tmp_path, capfd, cells, first, ename, evalue):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    make_notebook(nbdir / "00_ok.ipynb", "x = 1")
    make_notebook(nbdir / "01_bad.ipynb", *cells, "z = 3")
    make_notebook(nbdir / "02_never.ipynb", "open('never_ran', 'w')")
    argv = ["--profile", "smoke", "--notebooks", str(nbdir), "--out", str(tmp_path / "ex"), "--timeout", "3"]
    rc = reproduce.main(argv)
    out, err = capfd.readouterr()
    assert rc == 1
    lines = stderr_lines(err)
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{err}"
    m = FAILED.fullmatch(lines[0])
    assert m, lines[0]
    # the failing cell is the 4th code cell run: parameters [1], injected parameters [2], y = 2 [3]
    assert m["nb"] == "01_bad.ipynb" and m["n"] == "4" and m["first"] == first
    assert (m["ename"], m["evalue"]) == (ename, evalue)
    assert m["copy"] == str(tmp_path / "ex" / "01_bad.ipynb")
    executed = nbformat.read(m["copy"], as_version=4)
    assert [c.execution_count for c in executed.cells if c.cell_type == "code"][-1] is None  # z = 3 never ran
    assert "| 00_ok.ipynb |" in out and "01_bad" not in out  # the time table of the notebooks that finished
    assert not (tmp_path / "ex" / "02_never.ipynb").exists() and not (nbdir / "never_ran").exists()


def test_a_clean_run_prints_no_warning(tmp_path, capfd):
    """No kernel warning (ipykernel: unencrypted TCP; the kernel runs over IPC) and no papermill
    warning (a --param goes only to the notebooks that declare it) on the run's stderr."""
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    make_notebook(nbdir / "00_a.ipynb", "print(PROFILE)")
    make_notebook(nbdir / "01_b.ipynb", "print(PROFILE, N)", params="PROFILE = 'default'\nN = 1")
    argv = ["--profile", "smoke", "--notebooks", str(nbdir), "--out", str(tmp_path / "ex"), "--param", "N=5"]
    assert reproduce.main(argv) == 0
    err = capfd.readouterr().err
    assert not [ln for ln in err.splitlines() if "WARNING" in ln], err
    assert stderr_lines(err) == [], err
    b = nbformat.read(tmp_path / "ex" / "01_b.ipynb", as_version=4)
    assert b.cells[-1].outputs[0]["text"] == "smoke 5\n"
    assert not list(nbdir.glob("kernel*")), "the kernel's IPC sockets belong in a private temp folder"


def test_a_param_no_notebook_declares_is_reported(tmp_path, capfd):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    make_notebook(nbdir / "00_a.ipynb", "x = 1")
    argv = ["--profile", "smoke", "--notebooks", str(nbdir), "--out", str(tmp_path / "ex"), "--param", "NUM=2"]
    assert reproduce.main(argv) == 0
    assert stderr_lines(capfd.readouterr().err) == ["reproduce: --param NUM: no notebook run here declares it; ignored"]


def test_only_filters_and_rejects_unknown(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    make_notebook(nbdir / "00_a.ipynb", "1")
    make_notebook(nbdir / "03_c.ipynb", "1")
    assert [p.name for p in reproduce.list_notebooks(nbdir, only=["3"])] == ["03_c.ipynb"]
    with pytest.raises(SystemExit, match="07"):
        reproduce.list_notebooks(nbdir, only=["07"])
