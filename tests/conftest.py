"""Shared pytest setup: keep tests on the CPU, quiet and reproducible."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # importable from the repo root without installing
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _isolate_outputs(tmp_path, monkeypatch):
    """No test writes into the repo's artifacts/ or figures/."""
    monkeypatch.setenv("REID_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("REID_FIGURES", str(tmp_path / "figures"))
