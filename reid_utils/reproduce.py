"""Regenerate every figure and table headless: run the notebooks ``notebooks/NN_*.ipynb`` in order.

Usage::

    python -m reid_utils.reproduce                  # $REID_PROFILE, else default; all notebooks
    python -m reid_utils.reproduce --profile smoke  # the CI-sized run (--profile wins over $REID_PROFILE)
    python -m reid_utils.reproduce --only 00 03     # a subset, by number prefix
    python -m reid_utils.reproduce --profile paper --set train.iterations=2 --param NUM_SPLITS=1

Each notebook runs through papermill (kernel over IPC) with ``PROFILE`` set and ``$REID_PROFILE``
exported. ``--overrides JSON`` / ``--set FIELD.SUB=VALUE`` (merged, ``--set`` last) are exported as
``$REID_OVERRIDES``, checked before any notebook starts; ``--param NAME=VALUE`` sets a parameter
(JSON, else a string) of the notebooks that declare it. Executed copies go to the git-ignored
``executed/<profile>/``. A plain ``default`` run of the committed ``notebooks/`` (no overrides, no
``--param``) then writes each notebook that succeeded back over its source, cleaned for git
(:func:`clean_for_commit`), stamped with ``metadata.reid`` (profile, :func:`source_sha256`,
seconds); any other run leaves ``notebooks/`` (and, by the config, ``figures/``) alone. A failure
stops the run (exit status 1) with one line on stderr, then the times of those that finished::

    reproduce: FAILED in 03_x.ipynb: code cell [5] starting `fit(x)` raised ValueError: bad x (executed copy: ...)

A failing cell, a dead kernel and a cell timeout (``--timeout``) are reported alike. An unknown
``$REID_PROFILE`` is an error (exit status 2). New ``NN_`` notebooks are picked up without edits.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import logging.handlers
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reid_utils.config import OVERRIDES_ENV, PROFILES, REPO_ROOT, env_overrides, get_config, resolve_profile

NOTEBOOK_DIR = REPO_ROOT / "notebooks"  # the committed notebooks: a plain default run writes them back
EXECUTED_DIR = REPO_ROOT / "executed"
PROFILE_ENV = "REID_PROFILE"
INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it inserts


def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    """The ordered ``NN_*.ipynb`` notebooks, optionally filtered by ``NN`` prefixes."""
    nbs = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = {o.zfill(2) if o.isdigit() else o for o in only}
        unknown = wanted - {p.name[:2] for p in nbs}
        if unknown:
            raise SystemExit(
                f"reproduce: no notebook with prefix {sorted(unknown)} in {notebook_dir}; have {[p.name for p in nbs]}"
            )
        nbs = [p for p in nbs if p.name[:2] in wanted]
    return nbs


class NotebookFailed(RuntimeError):
    """A notebook failed; the one-line message names the notebook, the cell and the executed copy."""


@dataclass
class RunResult:
    notebook: str
    seconds: float
    output: Path


# -- the committed form of an executed notebook ----------------------------------------------
def _cells(nb) -> list:
    cells = nb.get("cells") if hasattr(nb, "get") else None
    if not isinstance(cells, list):
        raise TypeError(f"nb: expected a notebook (a dict with a 'cells' list), got {type(nb).__name__}")
    return cells


def _tags(cell) -> list:
    return (cell.get("metadata") or {}).get("tags") or []


def source_sha256(nb) -> str:
    """Hash of a notebook's source: what its stored outputs were computed from.

    The sha256 (hex) of the UTF-8 text made of one JSON line ``[cell_type, source]`` per cell,
    in order (a source stored as a list of lines is joined first). Outputs, metadata and
    execution counts are ignored, and so is papermill's ``injected-parameters`` cell, so the
    hash of an executed copy equals the hash of the notebook it was run from.

    Args:
        nb: a notebook, as a ``dict`` or an ``nbformat.NotebookNode``.
    """
    h = hashlib.sha256()
    for cell in _cells(nb):
        if INJECTED_TAG in _tags(cell):
            continue
        src = cell.get("source", "")
        src = src if isinstance(src, str) else "".join(src)
        h.update((json.dumps([cell.get("cell_type"), src], ensure_ascii=False) + "\n").encode("utf-8"))
    return h.hexdigest()


def clean_for_commit(nb, seconds: float, profile: str):
    """An executed notebook as it is committed (a new ``NotebookNode``; ``nb`` is not changed).

    Drops papermill's injected-parameters cell (and its error banner), the notebook- and
    cell-level ``papermill`` metadata and the per-cell ``execution`` timestamps; keeps outputs,
    execution counts and the ``python3`` kernelspec; stamps ``metadata.reid = {"profile",
    "source_sha256", "seconds"}`` (wall time of the run, 1 decimal).
    """
    import nbformat

    _cells(nb)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"seconds: expected a wall time >= 0, got {seconds!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    out = nbformat.from_dict(copy.deepcopy(dict(nb)))
    out.cells = [c for c in out.cells if not {INJECTED_TAG, "papermill-error-cell-tag"} & set(_tags(c))]
    for cell in out.cells:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    out.metadata.pop("papermill", None)
    out.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python"})["name"] = "python3"
    stamp = {"profile": profile, "source_sha256": source_sha256(out), "seconds": round(float(seconds), 1)}
    out.metadata["reid"] = stamp
    return out


# -- running one notebook -----------------------------------------------------------------------
@contextmanager
def _exported(variables: dict):
    """Set environment variables for the duration of the block, then restore them."""
    old = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.update({k: v for k, v in old.items() if v is not None})
        for k in [k for k, v in old.items() if v is None]:
            os.environ.pop(k, None)


def declared_parameters(nb: Path) -> set[str]:
    """Names set in the notebook's ``parameters`` cell (papermill's inspection)."""
    import papermill as pm

    return set(pm.inspect_notebook(str(nb)))


def _papermill_kwargs(nb: Path, kernel_dir: str, timeout: int | None, progress: bool) -> dict:
    """papermill's and nbclient's settings: the ``python3`` kernel, started in the notebook's folder,
    over IPC sockets in the private ``kernel_dir`` (ipykernel warns about unencrypted TCP); with a
    cell timeout, killed at once after the run rather than asked to shut down while a timed-out
    cell still runs (which makes the kernel print a traceback)."""
    from traitlets.config import Config

    kw = {"cwd": str(nb.parent), "progress_bar": progress, "kernel_name": "python3", "execution_timeout": timeout}
    if timeout:
        kw["shutdown_kernel"] = "immediate"
    if os.name == "posix":  # zmq's ipc:// transport needs Unix domain sockets
        kw["config"] = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(kernel_dir, "kernel")}})
    return kw


def _one_line(text: str, limit: int = 400) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _first_line(source: str) -> str:
    return next((ln.strip() for ln in (source or "").splitlines() if ln.strip()), "")[:80]


def _interrupted_cell(executed: Path) -> tuple[object, str]:
    """``(execution count, source)`` of the code cell running when the kernel died or timed out:
    the last one papermill started (``papermill.status`` ``running``, or, after papermill's
    clean-up, the last with a start time). A kernel that died before announcing the cell left no
    count: it is the previous cell's + 1, as the kernel counts."""
    import nbformat

    try:
        code = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    except Exception:  # noqa: BLE001 - no executed copy to read: the message says so with "?"
        code = []
    started = [i for i, c in enumerate(code) if (c.metadata.get("papermill") or {}).get("start_time")]
    running = [i for i in started if code[i].metadata["papermill"].get("status") == "running"]
    if not started:
        return "?", ""
    i = (running or started)[-1]
    count = code[i].get("execution_count") or max((c.execution_count or 0 for c in code[:i]), default=0) + 1
    return count, code[i].source


def _failure(nb: Path, out: Path, exc: Exception) -> NotebookFailed:
    """The one-line report of a failed notebook (a cell that raised, a dead kernel or a timeout)."""
    import papermill as pm

    if isinstance(exc, pm.PapermillExecutionError):
        count, source, ename, evalue = exc.exec_count, exc.source, exc.ename, _one_line(exc.evalue)
    else:
        count, source = _interrupted_cell(out)
        ename, evalue = type(exc).__name__, _one_line(_first_line(str(exc)) or repr(exc))
    return NotebookFailed(
        f"{nb.name}: code cell [{count}] starting `{_first_line(source)}` raised {ename}: {evalue} "
        f"(executed copy: {out})"
    )


def run_notebook(
    nb: Path,
    profile: str,
    out_dir: Path,
    env: dict | None = None,
    progress: bool = False,
    timeout: int | None = None,
    parameters: dict | None = None,
    write_back: bool = False,
) -> RunResult:
    """Execute one notebook with papermill into ``out_dir``; raise ``NotebookFailed`` on failure.

    ``env`` is exported for the run (e.g. ``REID_OVERRIDES``); ``parameters`` are notebook
    parameters besides ``PROFILE`` (e.g. ``{"NUM_SPLITS": 1}``), each passed only if the
    notebook's ``parameters`` cell declares it. ``write_back``: once the notebook succeeded,
    replace ``nb`` itself by its executed copy, cleaned for commit (:func:`clean_for_commit`).
    """
    import nbformat
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / nb.name
    declared = declared_parameters(nb)
    params = {k: v for k, v in {**(parameters or {}), "PROFILE": profile}.items() if k in declared}
    # The kernel imports this checkout's reid_utils even when it is not pip-installed.
    pypath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    records, log = logging.handlers.BufferingHandler(1 << 16), logging.getLogger("papermill")
    records.setLevel(logging.WARNING)  # nbclient logs through papermill's logger too
    log.addHandler(records)
    t0 = time.perf_counter()
    try:
        with _exported({PROFILE_ENV: profile, "PYTHONPATH": pypath, **(env or {})}):
            with tempfile.TemporaryDirectory(prefix="reid-kernel-") as kernel_dir:
                kw = _papermill_kwargs(nb, kernel_dir, timeout, progress)
                executed = pm.execute_notebook(str(nb), str(out), parameters=params, **kw)
    except (pm.PapermillExecutionError, DeadKernelError, CellTimeoutError) as e:
        raise _failure(nb, out, e) from None  # nbclient's log lines say the same: dropped
    finally:
        log.removeHandler(records)
    seconds = time.perf_counter() - t0
    for r in records.buffer:  # a successful run's papermill warnings, if any, are shown
        print(f"reproduce: {nb.name}: {r.getMessage()}", file=sys.stderr)
    if write_back:
        from reid_utils.cache import atomic_write_text

        atomic_write_text(nb, nbformat.writes(clean_for_commit(executed, seconds, profile)) + "\n")
    return RunResult(nb.name, seconds, out)


# -- the command line -----------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m reid_utils.reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--profile", default=None, choices=PROFILES, help="default: $REID_PROFILE, else default")
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebook prefixes")
    ap.add_argument("--out", type=Path, default=None, help="executed copies (default executed/<profile>)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="folder of NN_*.ipynb")
    ap.add_argument("--overrides", metavar="JSON", help="config overrides, exported as $REID_OVERRIDES")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD.SUB=VALUE", help="one override (repeatable)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a notebook parameter")
    return ap


def _choose_profile(flag: str | None) -> str:
    """``--profile`` if given, else ``$REID_PROFILE`` (checked), else ``default``."""
    name = flag or os.environ.get(PROFILE_ENV, "").strip()  # argparse checked the flag
    if name and name not in PROFILES:
        raise ValueError(f"${PROFILE_ENV}={name!r} is not a profile: expected one of {', '.join(PROFILES)}")
    return name or "default"


def _write_back_policy(notebook_dir: Path, profile: str, overrides: dict, params: dict) -> tuple[bool, str]:
    """``(write back?, why not)``: only a plain default run of the committed folder writes it back."""
    if profile != "default" or Path(notebook_dir).resolve() != Path(NOTEBOOK_DIR).resolve():
        return False, ""  # not a run of the committed notebooks: nothing to say
    if overrides or params:
        return False, f"config overrides (--overrides/--set/${OVERRIDES_ENV})" if overrides else "--param is given"
    with _exported({PROFILE_ENV: profile}):  # e.g. $REID_DATASET; where files go does not count
        run, stock = resolve_profile(profile).to_dict(), get_config(profile).to_dict()
    changed = sorted(k for k in run if run[k] != stock[k] and k not in ("artifacts_dir", "figures_dir"))
    return not changed, f"the environment changes the config ({', '.join(changed)})" if changed else ""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        profile = _choose_profile(args.profile)
        overrides, params = _export_overrides(args, profile)
    except ValueError as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 2

    from tqdm.auto import tqdm

    nbs = list_notebooks(args.notebooks, only=args.only)
    if not nbs:
        print(f"reproduce: no notebooks found in {args.notebooks}", file=sys.stderr)
        return 2
    for name in sorted(set(params) - set().union(*(declared_parameters(nb) for nb in nbs))):
        print(f"reproduce: --param {name}: no notebook run here declares it; ignored", file=sys.stderr)
    write_back, why_not = _write_back_policy(args.notebooks, profile, overrides, params)
    if why_not:
        print(f"reproduce: the committed notebooks are left unchanged: {why_not}")
    out_dir = args.out or EXECUTED_DIR / profile
    results: list[RunResult] = []
    kw = {"timeout": args.timeout, "parameters": params, "write_back": write_back}
    bar = tqdm(nbs, desc=f"notebooks ({profile})", unit="nb")
    for nb in bar:
        bar.set_postfix_str(nb.name)
        try:
            results.append(run_notebook(nb, profile, out_dir, **kw))
        except NotebookFailed as e:
            bar.close()
            print(f"reproduce: FAILED in {e}", file=sys.stderr)
            _print_times(results)
            return 1
    bar.close()
    _print_times(results)
    _write_times(results, out_dir / "timings.csv")
    if not args.only:  # a whole run: its time table goes beside the figures it produced (README)
        with _exported({PROFILE_ENV: profile}):
            figures = resolve_profile(profile).figures_path
        figures.mkdir(parents=True, exist_ok=True)
        _write_times(results, figures / "reproduce_times.csv")
    return 0


def _json_or_str(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _export_overrides(args, profile: str) -> tuple[dict, dict]:
    """Merge ``--overrides`` (else ``$REID_OVERRIDES``) and ``--set``, export and check them against
    the profile (ValueError naming the bad key); returns ``(overrides, --param parameters)``."""
    text = args.overrides if args.overrides is not None else os.environ.get(OVERRIDES_ENV, "")
    os.environ[OVERRIDES_ENV] = text
    overrides = env_overrides()  # checks the JSON, naming the variable
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE or FIELD.SUB=VALUE")
        *parents, leaf = key.split(".")
        node = overrides
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {part!r} is not a sub-config")
        node[leaf] = _json_or_str(value)
    os.environ[OVERRIDES_ENV] = json.dumps(overrides) if overrides else ""
    with _exported({PROFILE_ENV: profile}):
        resolve_profile(profile)  # fails here, before any notebook runs
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE with NAME a notebook parameter")
        params[name] = _json_or_str(value)
    return overrides, params


def _print_times(results: list[RunResult]) -> None:
    if not results:
        return
    print("\n| notebook | wall time (s) |\n|---|---:|")
    for r in results:
        print(f"| {r.notebook} | {r.seconds:.0f} |")
    print(f"| **total** | {sum(r.seconds for r in results):.0f} |")


def _write_times(results: list[RunResult], path: Path) -> None:
    from reid_utils.cache import atomic_write_text

    lines = ["notebook,seconds"] + [f"{r.notebook},{r.seconds:.1f}" for r in results]
    atomic_write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
