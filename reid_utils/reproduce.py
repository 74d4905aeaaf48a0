"""Regenerate every figure and table headless: run the notebooks in order.

Usage::

    python -m reid_utils.reproduce                       # default profile, all notebooks
    python -m reid_utils.reproduce --profile smoke       # the CI-sized run
    python -m reid_utils.reproduce --only 00 03          # a subset, by number prefix
    python -m reid_utils.reproduce --profile paper --set train.iterations=2 --param NUM_SPLITS=1

Each notebook ``notebooks/NN_*.ipynb`` is executed through papermill with its
``PROFILE`` parameter set, and with ``REID_PROFILE`` exported so the kernel
resolves the same profile. ``--overrides JSON`` and ``--set FIELD.SUB=VALUE``
(merged, ``--set`` last) are exported as ``$REID_OVERRIDES`` (``reid_utils.config``),
checked before any notebook starts; ``--param NAME=VALUE`` sets a notebook
parameter (a JSON value, else a string). Executed copies (with outputs) go to the
git-ignored ``executed/<profile>/``. A failure stops the run with a non-zero
exit status and a message naming the notebook and the cell that failed.
Notebooks added later are picked up by their ``NN_`` prefix, without edits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from reid_utils.config import OVERRIDES_ENV, PROFILES, REPO_ROOT, env_overrides, resolve_profile

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
EXECUTED_DIR = REPO_ROOT / "executed"


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
    """A notebook raised; the message names the notebook and the failing cell."""


@dataclass
class RunResult:
    notebook: str
    seconds: float
    output: Path


def run_notebook(
    nb: Path,
    profile: str,
    out_dir: Path,
    env: dict | None = None,
    progress: bool = False,
    timeout: int | None = None,
    parameters: dict | None = None,
) -> RunResult:
    """Execute one notebook with papermill; raise ``NotebookFailed`` on error.

    ``env`` is exported for the run (e.g. ``REID_OVERRIDES``); ``parameters`` are
    notebook parameters besides ``PROFILE`` (e.g. ``{"NUM_SPLITS": 1}``).
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / nb.name
    old_env = {}
    # The kernel imports this checkout's reid_utils even when it is not pip-installed.
    pypath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    for k, v in {"REID_PROFILE": profile, "PYTHONPATH": pypath, **(env or {})}.items():
        old_env[k] = os.environ.get(k)
        os.environ[k] = v
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb),
            str(out),
            parameters={**(parameters or {}), "PROFILE": profile},
            cwd=str(nb.parent),
            progress_bar=progress,
            kernel_name="python3",
            execution_timeout=timeout,
        )
    except pm.PapermillExecutionError as e:
        first = next((ln for ln in (e.source or "").splitlines() if ln.strip()), "")
        raise NotebookFailed(
            f"{nb.name}: the code cell [{e.exec_count}] starting `{first[:80]}` raised "
            f"{e.ename}: {e.evalue}\n  (cell {e.cell_index} of the executed copy, with the "
            f"traceback: {out})"
        ) from None
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return RunResult(nb.name, time.perf_counter() - t0, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m reid_utils.reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--profile", default="default", choices=PROFILES)
    ap.add_argument("--only", nargs="+", metavar="NN", help="run only these notebook prefixes")
    ap.add_argument("--out", type=Path, default=None, help="executed copies (default executed/<profile>)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="folder of NN_*.ipynb")
    ap.add_argument("--overrides", metavar="JSON", help="config overrides, exported as $REID_OVERRIDES")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD.SUB=VALUE", help="one override (repeatable)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a notebook parameter")
    args = ap.parse_args(argv)
    try:
        params = _export_overrides(args)
    except ValueError as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 2

    from tqdm.auto import tqdm

    nbs = list_notebooks(args.notebooks, only=args.only)
    if not nbs:
        print(f"reproduce: no notebooks found in {args.notebooks}", file=sys.stderr)
        return 2
    out_dir = args.out or EXECUTED_DIR / args.profile
    results: list[RunResult] = []
    bar = tqdm(nbs, desc=f"notebooks ({args.profile})", unit="nb")
    for nb in bar:
        bar.set_postfix_str(nb.name)
        try:
            results.append(run_notebook(nb, args.profile, out_dir, timeout=args.timeout, parameters=params))
        except NotebookFailed as e:
            bar.close()
            print(f"\nreproduce: FAILED in {e}", file=sys.stderr)
            _print_times(results)
            return 1
    bar.close()
    _print_times(results)
    _write_times(results, out_dir / "timings.csv")
    if not args.only:  # a whole run: its time table goes beside the figures it produced (README)
        figures = resolve_profile(args.profile).figures_path
        figures.mkdir(parents=True, exist_ok=True)
        _write_times(results, figures / "reproduce_times.csv")
    return 0


def _json_or_str(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _export_overrides(args) -> dict:
    """Merge ``--overrides`` (else ``$REID_OVERRIDES``) and ``--set``, export and check them against
    the profile (ValueError naming the bad key); returns the ``--param`` notebook parameters."""
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
    resolve_profile(args.profile)  # fails here, before any notebook runs
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE with NAME a notebook parameter")
        params[name] = _json_or_str(value)
    return params


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
