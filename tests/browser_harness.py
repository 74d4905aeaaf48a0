"""Drive a real JupyterLab in a real browser (Debian's chromium via Playwright).

Used by ``tests/test_browser.py`` to check the interactive explorer of notebook
06 (issue 6, item 4) the way a reader meets it: JupyterLab served on loopback,
the notebook opened in chromium, "Run All Cells" from the menu, the query
changed in the explorer, the page checked for errors; and that a committed, executed
notebook shows its stored figures when opened (:func:`wait_for_output_images`).

Everything started here is stopped here: :class:`LabServer` owns the server's
process group and every kernel the server spawned (kernels run in sessions of
their own, so they are tracked and killed separately); :func:`chromium` closes
the browser and the Playwright driver.

The explorer's DOM contract (``reid_utils.viz.widgets.ImportanceExplorer``): an outer ``.reid-explorer``
holding ``.reid-query`` (an ipywidgets Dropdown, i.e. a ``<select>`` inside),
``.reid-gallery``, ``.reid-ranking`` (text naming the query and the ranked
gallery ids), ``.reid-heatmap`` (an ``<img>`` or an element holding one),
``.reid-heatmap-title`` ("query <q> vs gallery <g>: similarity <s>") and
``.reid-status`` ("ready" after a successful update, else the error text).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACT_DIR = Path(os.environ.get("REID_BROWSER_ARTIFACTS") or Path(__file__).resolve().parent / "_artifacts")

# User settings for a fresh JupyterLab: no news/update toasts over the page, and
# every cell kept in the DOM (no windowing), so the DOM reflects the whole notebook.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_missing() -> list[str]:
    """What is missing to run the browser tests (empty when all is there)."""
    import importlib.util

    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (Debian package 'chromium'; .ci/run installs it)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package 'playwright' (pip install it; no browser download needed)")
    return missing


class LabServer:
    """A JupyterLab server on 127.0.0.1 with throw-away config, settings and state.

    It requires a random token (:attr:`token`; :meth:`api` sends it, :meth:`login_url`
    carries it to the browser) and keeps its XSRF checks on, so no other local user
    can run code through it while a test runs.

    Args:
        root_dir: the server's root (notebooks are opened relative to it).
        state_dir: where the temporary config/data/runtime/settings/workspace dirs
            and the server log go.
        env: extra environment for the server; kernels inherit it (this is how
            ``REID_PROFILE`` / ``REID_ARTIFACTS`` / ``REID_FIGURES`` reach them).
    """

    def __init__(self, root_dir: Path, state_dir: Path, env: dict | None = None):
        self.root_dir = Path(root_dir)
        self.state_dir = Path(state_dir)
        self.extra_env = dict(env or {})
        self.log_path = self.state_dir / "jupyterlab.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._seen_pids: set[int] = set()
        # Random per server; handed over in the environment (JUPYTER_TOKEN), not argv,
        # so other local users cannot read it from `ps`.
        self.token = secrets.token_hex(32)

    # -- start / stop -------------------------------------------------------
    def _environment(self) -> dict:
        dirs = {
            name: self.state_dir / sub
            for name, sub in [
                ("JUPYTER_CONFIG_DIR", "config"),
                ("JUPYTER_DATA_DIR", "data"),
                ("JUPYTER_RUNTIME_DIR", "runtime"),
                ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
                ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
                ("IPYTHONDIR", "ipython"),
            ]
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for rel, values in LAB_SETTINGS.items():
            p = dirs["JUPYTERLAB_SETTINGS_DIR"] / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(values))
        env = os.environ.copy()
        env.update({k: str(v) for k, v in dirs.items()})
        env.update({"JUPYTER_PLATFORM_DIRS": "1", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"})
        env.pop("JUPYTER_PATH", None)
        env.update({k: str(v) for k, v in self.extra_env.items()})
        env["JUPYTER_TOKEN"] = self.token
        return env

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--allow-root",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.expose_app_in_browser=True",  # read cell outputs from the model
            "--LabApp.news_url=None",
        ]

    def start(self, timeout: float = 90.0, attempts: int = 3) -> LabServer:
        """Start the server and wait until ``/api/status`` answers.

        Retries on another port if the chosen one was taken in the meantime.

        Raises:
            RuntimeError: the server exited or did not answer within ``timeout``
                seconds; the message carries the end of the server log.
        """
        env = self._environment()
        for attempt in range(attempts):
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self.root_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError:
                in_use = "already in use" in self.log_tail()
                self.stop()
                if not in_use or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {self.proc.returncode} before "
                    f"answering; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                self.api("GET", "api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.25)
        raise RuntimeError(
            f"JupyterLab did not answer /api/status on port {self.port} within "
            f"{timeout:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> None:
        """Shut kernels down, stop the server, kill whatever of it survives. Idempotent."""
        if self.proc is None:
            return
        self._remember_children()
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.shutdown_kernels(timeout=5)
            self._remember_children()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # The server's own group (anything it forked without a new session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._kill_remembered()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None

    def _remember_children(self) -> None:
        """Record every descendant of the server (kernels live in their own sessions)."""
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil comes with ipykernel
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._seen_pids.add(child.pid)

    def _kill_remembered(self) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover
            return
        own_group = os.getpgrp()
        for pid in sorted(self._seen_pids):
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                p = psutil.Process(pid)
                pgid = os.getpgid(pid)
                if pgid != own_group and pgid == pid:  # a kernel: its whole session
                    os.killpg(pgid, signal.SIGKILL)
                else:
                    p.kill()
        self._seen_pids.clear()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- REST ---------------------------------------------------------------
    def url(self, path: str = "") -> str:
        """The URL of ``path`` on this server, without credentials."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def login_url(self, path: str = "") -> str:
        """``url(path)`` carrying the token: the browser logs in with it (the server then
        sets its login and ``_xsrf`` cookies, which JupyterLab sends on every call)."""
        sep = "&" if "?" in path else "?"
        return self.url(f"{path}{sep}token={self.token}")

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        """Call the server's REST API with the token header; returns the decoded JSON (or None).

        Token-authenticated requests are exempt from the XSRF check, which stays on.
        """
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Authorization": f"token {self.token}"}
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def kernel_states(self) -> list[str]:
        """``execution_state`` of every kernel; ``["unknown"]`` while the server cannot
        list them (jupyter_server answers 500 while a kernel is still starting)."""
        try:
            return [k.get("execution_state", "?") for k in self.api("GET", "api/kernels")]
        except urllib.error.HTTPError:
            return ["unknown"]

    def shutdown_kernels(self, timeout: float = 10) -> None:
        """Close every session and kernel of this server (frees the CPU between tests)."""
        self._remember_children()
        for s in self.api("GET", "api/sessions", timeout=timeout):
            with contextlib.suppress(Exception):
                self.api("DELETE", f"api/sessions/{s['id']}", timeout=timeout)
        for k in self.api("GET", "api/kernels", timeout=timeout):
            with contextlib.suppress(Exception):
                self.api("DELETE", f"api/kernels/{k['id']}", timeout=timeout)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


@contextlib.contextmanager
def chromium(headless: bool = True):
    """Debian's chromium under Playwright (never a downloaded browser); closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=headless, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageLog:
    """Uncaught page exceptions and console errors, for failure messages."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def attach(self, page) -> PageLog:
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        return self

    def __str__(self) -> str:
        return f"page errors: {self.page_errors[-10:]}\nconsole errors: {self.console_errors[-10:]}"


# --- JupyterLab page actions ----------------------------------------------
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on show
_CELL_OUTPUTS_JS = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.content || !w.content.model) return null;
  const cells = w.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j).toJSON();
      if (o.output_type === 'error') out.push({cell: i, ename: o.ename, evalue: o.evalue});
    }
  }
  return out;
}"""

_PAGE_ERRORS_JS = """() => {
  const found = [];
  for (const el of document.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')) {
    const t = el.innerText || '';
    if (/Traceback|Error/.test(t)) found.push(t.slice(0, 2000));
  }
  for (const el of document.querySelectorAll('.jp-OutputArea-output')) {
    const t = el.innerText || '';
    if (/Error displaying widget|Error rendering output|Model not found/i.test(t))
      found.push(t.slice(0, 500));
  }
  return found;
}"""


def open_notebook(page, server: LabServer, rel_path: str, timeout: float = 90.0) -> None:
    """Open ``rel_path`` in JupyterLab and wait for its kernel to be idle."""
    # ?reset: start from an empty workspace (no notebook of an earlier test restored).
    page.goto(server.login_url(f"lab/tree/{rel_path}?reset"), timeout=timeout * 1000)
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=timeout * 1000)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
        "&& window.jupyterapp.shell.currentWidget.content",
        timeout=timeout * 1000,
    )
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        states = server.kernel_states()
        if states and all(s == "idle" for s in states):
            return
        time.sleep(0.25)
    raise TimeoutError(
        f"kernel for {rel_path} not idle within {timeout:.0f} s "
        f"(states {server.kernel_states()}); server log:\n{server.log_tail()}"
    )


def run_all_cells(page) -> None:
    """Run > Run All Cells, from JupyterLab's menu bar (as a reader would)."""
    page.locator(f"{PANEL} .jp-Cell").first.click()  # the notebook has focus
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def cell_errors(page) -> list[dict]:
    """``{cell, ename, evalue}`` of every error output in the open notebook's model."""
    return page.evaluate(_CELL_OUTPUTS_JS) or []


def page_error_texts(page) -> list[str]:
    """Text of rendered stderr/error outputs that mention an error or traceback,
    and of widget rendering failures."""
    return page.evaluate(_PAGE_ERRORS_JS)


_OUTPUT_IMAGES_JS = """(panel) => Array.from(
  document.querySelectorAll(panel + ' .jp-OutputArea-output img')
).map(img => {
  const holder = img.closest('[data-mime-type]');
  return {complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
          mime: holder ? holder.getAttribute('data-mime-type') : null};
})"""


def output_images(page) -> list[dict]:
    """``{complete, naturalWidth, naturalHeight, mime}`` of every ``<img>`` in the outputs of the
    notebook on show (stored figures render as ``<img>`` in ``.jp-OutputArea-output``)."""
    return page.evaluate(_OUTPUT_IMAGES_JS, PANEL)


def wait_for_output_images(page, n_expected: int, timeout: float) -> list[dict]:
    """Wait until at least ``n_expected`` output images are in the DOM and every one of them has
    finished loading (decoded, or broken); returns :func:`output_images`.

    Raises:
        TimeoutError: with the images seen so far.
    """
    t_end = time.monotonic() + timeout
    imgs: list[dict] = []
    while time.monotonic() < t_end:
        imgs = output_images(page)
        if len(imgs) >= max(n_expected, 1) and all(i["complete"] for i in imgs):
            return imgs
        time.sleep(0.25)
    raise TimeoutError(
        f"expected {n_expected} loaded output images within {timeout:.0f} s, have {imgs}; "
        f"error outputs {page_error_texts(page)}"
    )


def wait_for_run_all(page, server: LabServer, n_code_cells: int, timeout: float) -> float:
    """Wait until every code cell ran (or a cell failed) and the kernel is idle.

    Args:
        n_code_cells: non-empty code cells of the notebook (each gets a number).
        timeout: seconds.

    Returns:
        Seconds waited.

    Raises:
        TimeoutError: with the prompts, kernel states, errors and server log.
    """
    t0 = time.monotonic()
    stable = 0
    while time.monotonic() - t0 < timeout:
        prompts = page.eval_on_selector_all(
            f"{PANEL} .jp-CodeCell .jp-InputArea-prompt", "els => els.map(e => e.textContent.trim())"
        )
        numbered = sum(bool(re.search(r"\[\d+\]", p)) for p in prompts)
        running = any("*" in p for p in prompts)
        idle = all(s == "idle" for s in server.kernel_states())
        finished = numbered >= n_code_cells or bool(cell_errors(page))
        stable = stable + 1 if (idle and not running and finished) else 0
        if stable >= 2:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise TimeoutError(
        f"Run All did not finish within {timeout:.0f} s: prompts {prompts}, kernels "
        f"{server.kernel_states()}, errors {cell_errors(page)}\nserver log:\n{server.log_tail(30)}"
    )


# --- the explorer ------------------------------------------------------------
_EXPLORER_STATE_JS = """() => {
  const root = document.querySelector('.reid-explorer');
  if (!root) return null;
  const q = s => root.querySelector(s);
  const text = s => { const e = q(s); return e ? (e.innerText || e.textContent || '').trim() : null; };
  const hm = q('.reid-heatmap');
  const img = hm ? (hm.tagName === 'IMG' ? hm : hm.querySelector('img')) : null;
  const sel = q('.reid-query select');
  const gsel = q('.reid-gallery select');
  return {
    status: text('.reid-status'), ranking: text('.reid-ranking'),
    title: text('.reid-heatmap-title'), heatmap: hm !== null,
    heatmapSrc: img ? img.getAttribute('src') : null,
    heatmapLoaded: img ? (img.complete && img.naturalWidth > 0) : null,
    queryIndex: sel ? sel.selectedIndex : null,
    queryOptions: sel ? Array.from(sel.options).map(o => o.textContent.replace(/\\u00a0/g, ' ')) : [],
    galleryIndex: gsel ? gsel.selectedIndex : null,
    galleryOptions: gsel ? Array.from(gsel.options).map(o => o.textContent.replace(/\\u00a0/g, ' ')) : [],
  };
}"""

TITLE_RE = re.compile(
    r"query\s+(?P<q>\S+)\s+vs\s+gallery\s+(?P<g>\S+?):\s+similarity\s+"
    r"(?P<s>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)",
    re.I,
)


def explorer_state(page) -> dict | None:
    """Texts, heatmap ``src`` and dropdown state of the explorer (None if absent)."""
    return page.evaluate(_EXPLORER_STATE_JS)


def is_ready(state: dict | None) -> bool:
    return bool(state) and (state.get("status") or "").strip().lower() == "ready"


def wait_for_explorer(page, timeout: float) -> dict:
    """Wait for the explorer to be rendered and report ``ready``."""
    t_end = time.monotonic() + timeout
    state = None
    while time.monotonic() < t_end:
        state = explorer_state(page)
        if is_ready(state) and state["queryOptions"]:
            return state
        time.sleep(0.25)
    raise TimeoutError(
        f"explorer not rendered/ready within {timeout:.0f} s; last state {state}; "
        f"error outputs {page_error_texts(page)}"
    )


def select_option(page, selector: str, index: int) -> None:
    """Choose option ``index`` of the ``<select>`` inside ``selector`` (fires 'change')."""
    page.locator(f".reid-explorer {selector} select").select_option(index=index)


def wait_for_update(page, before: dict, keys: tuple[str, ...], timeout: float) -> dict:
    """Wait until the status is ``ready`` again, every state entry in ``keys``
    differs from ``before`` and the heatmap image (if an ``<img>``) has loaded;
    returns the new state.

    Raises:
        TimeoutError: with the last state and any error text on the page.
    """
    t_end = time.monotonic() + timeout
    state = None
    while time.monotonic() < t_end:
        state = explorer_state(page)
        if (
            is_ready(state)
            and all(state.get(k) != before.get(k) for k in keys)
            and state.get("heatmapLoaded") is not False
        ):  # a new <img> has decoded
            return state
        time.sleep(0.2)
    raise TimeoutError(
        f"explorer did not update {keys} within {timeout:.0f} s.\nbefore: {before}\n"
        f"now: {state}\nerror outputs: {page_error_texts(page)}"
    )


def screenshot(page, name: str, selector: str | None = None) -> Path:
    """Save a PNG of the viewport under :data:`ARTIFACT_DIR`.

    With ``selector``, its element is first scrolled to the top of the notebook
    (an element screenshot of a widget taller than JupyterLab's scrolled panel
    would show toolbar and status bar over it).
    """
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACT_DIR / name
    if selector:
        page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)  # let images settle after the scroll
    page.screenshot(path=str(path))
    return path
