"""The package's shape, checked: layers import downwards only, modules and functions stay
small, nothing points outside the repository, and ruff is clean.

Layers (README, "Architecture"): ``viz -> experiments -> training -> data, synth, models,
eval -> config, cache, paper``; ``notebook``, ``reproduce`` and ``train`` sit on top.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "reid_utils"

BASE = {"config", "cache", "cache_io", "paper"}
MIDDLE = {
    "synth": BASE,
    "models": BASE,
    "data": BASE | {"synth"},  # the synthetic benchmark is read through the MARS loader
    "eval": BASE | {"models", "data"},  # shortlist rescoring takes an aggregator; ids of tracklets
}
ALLOWED = {
    "config": set(),
    "cache": {"config", "cache_io"},
    "cache_io": set(),
    "paper": set(),
    **MIDDLE,
    "training": BASE | set(MIDDLE),
    "experiments": BASE | set(MIDDLE) | {"training"},
    "viz": BASE | set(MIDDLE) | {"training", "experiments"},
    "notebook": BASE | set(MIDDLE) | {"training", "experiments", "viz"},
    "reproduce": BASE,
    "train": BASE | set(MIDDLE) | {"training", "experiments"},
    "__init__": BASE | set(MIDDLE) | {"training", "experiments", "viz"},
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_MODULE_DOCSTRING_LINES = 25


def _modules():
    return sorted(p for p in PKG.rglob("*.py"))


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else path.stem


def _imported_layers(path: Path) -> set[str]:
    """Layers of reid_utils named by any import in ``path`` (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(path.relative_to(ROOT).with_suffix("").parts[: -node.level])
                names = [".".join(base + ([node.module] if node.module else []))]
                if not node.module:
                    names = [f"{names[0]}.{a.name}" for a in node.names]
            elif node.module == "reid_utils":
                names = [f"reid_utils.{a.name}" for a in node.names]
            elif node.module:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "reid_utils" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_the_layer_map_knows_every_module():
    unknown = {_layer(p) for p in _modules()} - set(ALLOWED)
    assert not unknown, f"add these to the layer map (and the README's Architecture section): {unknown}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down_the_layers(path):
    layer = _layer(path)
    bad = _imported_layers(path) - ALLOWED[layer] - {layer}
    assert not bad, f"{path.relative_to(ROOT)} ({layer}) imports higher or sideways layers {sorted(bad)}"


def test_module_and_function_sizes():
    too_long = []
    for path in _modules():
        src = path.read_text()
        n = len(src.splitlines())
        if n > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines > {MAX_MODULE_LINES}")
        tree = ast.parse(src)
        doc = ast.get_docstring(tree, clean=False) or ""
        if len(doc.splitlines()) > MAX_MODULE_DOCSTRING_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: module docstring {len(doc.splitlines())} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                k = node.end_lineno - node.lineno + 1
                if k > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {k} lines")
    assert not too_long, "\n".join(too_long)


def test_nothing_points_outside_the_repository():
    """Docs and code name no file that is not in the repository (e.g. a design note kept elsewhere)."""
    hits = []
    for path in [*_modules(), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        if path.name == "test_architecture.py":
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if "DESIGN.md" in line:
                hits.append(f"{path.relative_to(ROOT)}:{i}")
    assert not hits, f"references to DESIGN.md, which is not in the repository: {hits}"


def test_benchmarks_are_self_contained():
    """Benchmarks import the package, never the test suite (no import of it, no path into it)."""
    bad = []
    for p in (ROOT / "benchmarks").glob("*.py"):
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in {"tests", "fixtures_builders"}:
                bad.append(f"{p.name}:{n.lineno}")
            elif isinstance(n, ast.Import) and any(a.name.split(".")[0] == "tests" for a in n.names):
                bad.append(f"{p.name}:{n.lineno}")
            elif isinstance(n, ast.Constant) and n.value == "tests":
                bad.append(f"{p.name}:{n.lineno}")
    assert not bad, f"benchmarks reaching into tests/: {bad}"


def _ruff():
    exe = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(exe).exists():
        pytest.fail("ruff is not installed (it is in requirements.txt)")
    return exe


def test_ruff_lint_is_clean():
    r = subprocess.run([_ruff(), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean():
    r = subprocess.run([_ruff(), "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
