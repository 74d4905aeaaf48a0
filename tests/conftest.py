"""Shared pytest setup: keep tests on the CPU, quiet and reproducible."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # importable from the repo root without installing
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory):
    """One artifact cache for every smoke notebook run of the session (tests/test_notebooks.py,
    tests/test_browser.py), so a notebook reuses what an earlier run computed."""
    return tmp_path_factory.mktemp("smoke_artifacts")


@pytest.fixture(autouse=True)
def _isolate_outputs(tmp_path, monkeypatch):
    """No test writes into the repo's artifacts/ or figures/."""
    monkeypatch.setenv("REID_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("REID_FIGURES", str(tmp_path / "figures"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Unit tests use tiny tensors: one torch thread is faster and immune to other
    processes competing for the 2 cores (notebook kernels are separate processes)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: minutes, not seconds (tests/test_paper_dryrun.py); run by default, deselect with -m 'not slow'",
    )
