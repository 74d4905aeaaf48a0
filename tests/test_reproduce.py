import nbformat
import pytest

from reid_utils import reproduce


def _nb(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("PROFILE = 'default'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 · t"), params] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


def test_runner_runs_in_order_and_passes_the_profile(tmp_path, capsys):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    marker = tmp_path / "order.txt"
    for name in ["01_b.ipynb", "00_a.ipynb"]:
        _nb(
            nbdir / name,
            f"import os\nopen({str(marker)!r}, 'a').write({name[:2]!r} + PROFILE + os.environ['REID_PROFILE'] + ',')",
        )
    (nbdir / "notes.ipynb").write_text("not a numbered notebook, ignored")
    rc = reproduce.main(["--profile", "smoke", "--notebooks", str(nbdir), "--out", str(tmp_path / "ex")])
    assert rc == 0
    assert marker.read_text() == "00smokesmoke,01smokesmoke,"
    assert (tmp_path / "ex" / "00_a.ipynb").exists() and (tmp_path / "ex" / "timings.csv").exists()


def test_runner_names_the_failing_notebook_and_cell(tmp_path, capsys):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _nb(nbdir / "00_ok.ipynb", "x = 1")
    _nb(nbdir / "01_bad.ipynb", "y = 2", "raise ValueError('broken on purpose')")
    _nb(nbdir / "02_never.ipynb", "open('never_ran', 'w')")
    rc = reproduce.main(["--profile", "smoke", "--notebooks", str(nbdir), "--out", str(tmp_path / "ex")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "01_bad.ipynb" in err and "raise ValueError" in err and "broken on purpose" in err
    assert not (tmp_path / "ex" / "02_never.ipynb").exists()


def test_only_filters_and_rejects_unknown(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _nb(nbdir / "00_a.ipynb", "1")
    _nb(nbdir / "03_c.ipynb", "1")
    assert [p.name for p in reproduce.list_notebooks(nbdir, only=["3"])] == ["03_c.ipynb"]
    with pytest.raises(SystemExit, match="07"):
        reproduce.list_notebooks(nbdir, only=["07"])
