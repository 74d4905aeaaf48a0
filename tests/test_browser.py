"""Notebook 06's explorer in a real browser (issue 6, item 4).

JupyterLab is served on 127.0.0.1 (a random token, XSRF checks on, throw-away
settings/workspaces/runtime dirs, a temporary copy of the notebook), Debian's chromium is driven by
Playwright, the notebook is run with Run > Run All Cells under the ``smoke``
profile, the query is changed in the explorer, and the test checks that the
ranking and heatmap follow, that the page shows no error, and saves a screenshot
(``tests/_artifacts/browser_explorer.png``, or ``$REID_BROWSER_ARTIFACTS``).

A committed, executed notebook (:data:`STORED_NB`) is also opened, without running it, to
check that its stored figures render (every output ``<img>`` decodes) and that it shows no
error output.

Two fast self-tests prove the harness on its own, independent of notebook 06: a
tiny notebook with a stand-in explorer that follows the same DOM contract, and
a notebook that fails on purpose (the error checks must see it).

Skipped only when ``/usr/bin/chromium`` or the ``playwright`` package is missing
(fails instead when ``$CI`` or ``$REID_REQUIRE_BROWSER`` is set: CI must have
them; ``.ci/run`` installs chromium). Deselect with ``-m "not browser"``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import browser_harness as bh
import nbformat
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NB06 = ROOT / "notebooks" / "06_qualitative_importance.ipynb"
# A committed notebook executed by the default profile (python -m reid_utils.reproduce), with figures.
STORED_NB = ROOT / "notebooks" / "04_learned_aggregation.ipynb"

STANDIN_EXPLORER = r"""
import io, zlib
import numpy as np
import ipywidgets as W
from PIL import Image
from IPython.display import display

QUERIES = ["q3", "q7", "q11", "qbad"]  # qbad: the update fails half-way

def ranked(q):
    rng = np.random.default_rng(zlib.crc32(q.encode()))
    return [f"g{i}" for i in rng.permutation(20)[:5]]

def heat(q, g):
    rng = np.random.default_rng(zlib.crc32(f"{q}|{g}".encode()))
    a = (rng.random((8, 8)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).resize((96, 96), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue(), float(a.mean() / 255)

query = W.Dropdown(options=QUERIES, description="query").add_class("reid-query")
gallery = W.Select(options=ranked(QUERIES[0]), rows=5, description="gallery").add_class("reid-gallery")
ranking = W.HTML().add_class("reid-ranking")
title = W.HTML().add_class("reid-heatmap-title")
heatmap = W.Image(format="png", width=192).add_class("reid-heatmap")
status = W.Label().add_class("reid-status")
switching = False

def render(*_):
    if switching:
        return
    status.value = "updating"
    try:
        q, g = query.value, gallery.value
        ranking.value = f"<b>query {q}</b>: " + ", ".join(gallery.options)
        if q == "qbad":
            raise RuntimeError("stand-in failure")
        heatmap.value, s = heat(q, g)
        title.value = f"query {q} vs gallery {g}: similarity {s:.3f}"
        status.value = "ready"
    except Exception as e:
        status.value = f"error: {type(e).__name__}: {e}"

def on_query(_):
    global switching
    switching = True
    gallery.options = ranked(query.value)
    switching = False
    render()

query.observe(on_query, "value")
gallery.observe(render, "value")
render()
display(W.VBox([query, status, ranking, gallery, title, heatmap]).add_class("reid-explorer"))
"""


# --- fixtures ---------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    missing = bh.browser_missing()
    if missing:
        msg = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI") or os.environ.get("REID_REQUIRE_BROWSER"):
            pytest.fail(msg + " (required here: $CI or $REID_REQUIRE_BROWSER is set)")
        pytest.skip(msg)
    with bh.chromium() as b:
        yield b


@pytest.fixture(scope="module")
def lab_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    dirs = {k: base / k for k in ("root", "state", "figures")}
    for d in dirs.values():
        d.mkdir()
    return dirs


@pytest.fixture(scope="module")
def lab(browser, lab_dirs, shared_artifacts):
    """One JupyterLab for the module; kernels inherit the smoke profile, the session's shared
    smoke artifact cache (conftest) and temp dirs."""
    env = {
        "REID_PROFILE": "smoke",
        "REID_ARTIFACTS": str(shared_artifacts),
        "REID_FIGURES": str(lab_dirs["figures"]),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }
    server = bh.LabServer(lab_dirs["root"], lab_dirs["state"], env)
    t0 = time.monotonic()
    try:
        server.start()
        print(f"JupyterLab ready on port {server.port} in {time.monotonic() - t0:.1f} s")
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser, lab):
    """A fresh browser context; on teardown its kernels are shut down."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.log = bh.PageLog().attach(pg)
    try:
        yield pg
    finally:
        with contextlib.suppress(Exception):
            context.close()
        with contextlib.suppress(Exception):
            lab.shutdown_kernels()


@contextlib.contextmanager
def failure_screenshot(page, name: str):
    """On any failure, keep a screenshot of the page and add the page's console log."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            path = bh.screenshot(page, f"browser_failure_{name}.png")
            print(f"failure screenshot: {path}")
        print(page.log)
        raise


def write_notebook(path: Path, code_cells: list[str]) -> int:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# harness self-test")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in code_cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return n_code_cells(path)


def n_code_cells(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())


# --- checks shared by the self-test and notebook 06 ----------------------------
def assert_no_errors(page, where: str) -> None:
    errs = bh.cell_errors(page)
    assert not errs, f"{where}: error outputs " + "; ".join(
        f"cell {e['cell']}: {e['ename']}: {e['evalue']}" for e in errs
    )
    texts = bh.page_error_texts(page)
    assert not texts, f"{where}: error text on the page:\n" + "\n---\n".join(texts)
    assert not page.log.page_errors and not page.log.console_errors, (
        f"{where}: JavaScript errors in the page (widget front end?):\n{page.log}"
    )


def check_title(state: dict) -> tuple[str, str]:
    m = bh.TITLE_RE.search(state["title"] or "")
    assert m, f"heatmap title {state['title']!r} is not 'query <q> vs gallery <g>: similarity <s>'"
    return m["q"], m["g"]


def names(text: str, token: str) -> bool:
    """``token`` (an id from the heatmap title) appears in ``text`` as a whole word."""
    return re.search(rf"(?<![\w.]){re.escape(token)}(?![\w.])", text or "") is not None


def exercise_explorer(page, timeout: float) -> list[str]:
    """Change the query (and then the gallery item, when the gallery is a <select>);
    check that ranking, heatmap title and image follow. Returns what was done."""
    done = []
    s0 = bh.wait_for_explorer(page, timeout)
    q0, _ = check_title(s0)
    assert len(s0["queryOptions"]) >= 2, f"need two queries to switch between, got {s0['queryOptions']}"
    assert s0["heatmap"], "no .reid-heatmap in the explorer"

    new = (s0["queryIndex"] + 1) % len(s0["queryOptions"])
    keys = ("ranking", "title") + (("heatmapSrc",) if s0["heatmapSrc"] else ())
    t0 = time.monotonic()
    bh.select_option(page, ".reid-query", new)
    s1 = bh.wait_for_update(page, s0, keys, timeout)
    done.append(
        f"query {s0['queryOptions'][s0['queryIndex']]!r} -> {s0['queryOptions'][new]!r}: "
        f"updated in {time.monotonic() - t0:.2f} s"
    )
    q1, g1 = check_title(s1)
    assert s1["queryIndex"] == new
    assert q1 != q0, f"heatmap title still names query {q0}: {s1['title']!r}"
    assert names(s1["queryOptions"][new], q1), (
        f"title names query {q1!r}, the dropdown shows {s1['queryOptions'][new]!r}"
    )
    assert names(s1["ranking"], q1) and names(s1["ranking"], g1), (
        f"ranking {s1['ranking']!r} should name query {q1!r} and gallery {g1!r}"
    )

    opts = s1["galleryOptions"]
    if s1["galleryIndex"] is not None and len(opts) >= 2:
        gnew = (max(s1["galleryIndex"], 0) + 1) % len(opts)
        keys = ("title",) + (("heatmapSrc",) if s1["heatmapSrc"] else ())
        bh.select_option(page, ".reid-gallery", gnew)
        s2 = bh.wait_for_update(page, s1, keys, timeout)
        q2, g2 = check_title(s2)
        assert q2 == q1 and g2 != g1 and names(opts[gnew], g2), (
            f"after choosing gallery {opts[gnew]!r} the title reads {s2['title']!r}"
        )
        done.append(f"gallery -> {opts[gnew]!r}: heatmap '{s2['title']}'")
    return done


def run_in_lab(page, lab, rel: str, timeout: float) -> float:
    bh.open_notebook(page, lab, rel)
    bh.run_all_cells(page)
    return bh.wait_for_run_all(page, lab, n_code_cells(lab.root_dir / rel), timeout)


# --- tests ------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_harness_drives_a_standin_explorer(page, lab):
    """The harness, independent of notebook 06: a stand-in explorer with the DOM contract
    (and an update that fails, which the harness must report, not accept)."""
    write_notebook(
        lab.root_dir / "selftest" / "explorer.ipynb",
        ["import sys; print('python', sys.version.split()[0])", STANDIN_EXPLORER],
    )
    with failure_screenshot(page, "selftest"):
        run_in_lab(page, lab, "selftest/explorer.ipynb", timeout=60)
        assert_no_errors(page, "stand-in explorer")
        done = exercise_explorer(page, timeout=20)
        assert len(done) == 2, done  # the stand-in has a <select> gallery
        assert_no_errors(page, "stand-in explorer after interaction")
        print("\n".join(done))
        print("screenshot:", bh.screenshot(page, "browser_selftest.png", ".reid-explorer"))
        # Negative control: an update that fails must not pass for one that worked.
        before = bh.explorer_state(page)
        bh.select_option(page, ".reid-query", before["queryOptions"].index("qbad"))
        with pytest.raises(TimeoutError, match="error: RuntimeError: stand-in failure"):
            bh.wait_for_update(page, before, ("ranking", "title"), timeout=5)


@pytest.mark.timeout(120)
def test_harness_sees_a_failing_cell(page, lab):
    """Negative control: the error checks catch a cell that raises."""
    write_notebook(
        lab.root_dir / "selftest" / "fails.ipynb",
        ["print('before')", "raise ValueError('deliberate failure')", "print('never')"],
    )
    with failure_screenshot(page, "fails"):
        run_in_lab(page, lab, "selftest/fails.ipynb", timeout=60)
        errs = bh.cell_errors(page)
        assert [(e["ename"], e["evalue"]) for e in errs] == [("ValueError", "deliberate failure")]
        assert any("ValueError" in t for t in bh.page_error_texts(page))
        with pytest.raises(AssertionError, match="ValueError"):
            assert_no_errors(page, "fails.ipynb")


def copy_into_lab(lab, path: Path) -> str:
    """Copy a repository notebook into the JupyterLab folder's ``notebooks/``; its path there."""
    copy = lab.root_dir / "notebooks" / path.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy2(path, copy)
    return f"notebooks/{path.name}"


@pytest.mark.timeout(180)
def test_notebook06_explorer_in_jupyterlab(page, lab):
    """Notebook 06 under smoke in JupyterLab: run all, switch query, no errors, screenshot."""
    assert NB06.exists(), f"{NB06.relative_to(ROOT)} is missing"
    original = NB06.read_bytes()
    rel = copy_into_lab(lab, NB06)
    with failure_screenshot(page, "notebook06"):
        secs = run_in_lab(page, lab, rel, timeout=150)
        print(f"{NB06.name}: Run All Cells finished in {secs:.1f} s (smoke)")
        assert_no_errors(page, NB06.name)
        done = exercise_explorer(page, timeout=30)
        assert_no_errors(page, f"{NB06.name} after interaction")
        print("\n".join(done))
        print("screenshot:", bh.screenshot(page, "browser_explorer.png", ".reid-explorer"))
    assert NB06.read_bytes() == original, f"{NB06.name} in the repo was modified"


def stored_images(path: Path) -> int:
    """How many outputs of ``path`` carry an image (``image/png``, ``image/jpeg``, ...)."""
    nb = nbformat.read(path, as_version=4)
    return sum(
        any(k.startswith("image/") for k in o.get("data", {}))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


@pytest.mark.timeout(180)
def test_stored_figures_render_in_jupyterlab(page, lab):
    """A committed executed notebook, opened (not run) in JupyterLab: its stored figures render
    (every output <img> decodes to a non-empty image) and no output is an error."""
    assert STORED_NB.exists(), f"{STORED_NB} is missing"
    n_images = stored_images(STORED_NB)
    assert n_images, (
        f"{STORED_NB.name} holds no stored figure: it must be committed executed "
        f"(python -m reid_utils.reproduce --profile default --only {STORED_NB.name[:2]})"
    )
    original = STORED_NB.read_bytes()
    rel = copy_into_lab(lab, STORED_NB)
    with failure_screenshot(page, "stored_figures"):
        t0 = time.monotonic()
        bh.open_notebook(page, lab, rel)
        imgs = bh.wait_for_output_images(page, n_images, timeout=60)
        print(f"{STORED_NB.name}: {len(imgs)} output images rendered in {time.monotonic() - t0:.1f} s")
        decoded = [i for i in imgs if i["naturalWidth"] > 0 and i["naturalHeight"] > 0]
        broken = [i for i in imgs if not (i["naturalWidth"] > 0 and i["naturalHeight"] > 0)]
        assert not broken, f"{STORED_NB.name}: {len(broken)} of {len(imgs)} output images did not decode: {broken}"
        assert len(decoded) >= n_images, (
            f"{STORED_NB.name}: {n_images} stored image outputs, {len(decoded)} rendered: {imgs}"
        )
        assert_no_errors(page, f"{STORED_NB.name} (stored outputs)")
        print("screenshot:", bh.screenshot(page, "browser_stored_figures.png", f"{bh.PANEL} .jp-OutputArea-output img"))
    assert STORED_NB.read_bytes() == original, f"{STORED_NB.name} in the repo was modified"
