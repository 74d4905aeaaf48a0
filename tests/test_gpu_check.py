"""benchmarks/gpu_check.py, the one GPU check of the paper path, exercised on the CPU: without
CUDA it skips cleanly; with ``--cpu-smoke`` every section runs at tiny sizes (the fused
kernel under Triton's interpreter) and the JSON holds every section with its numbers.
The checks' GPU thresholds are not asserted here (tiny random networks); only that every
code path ran, produced finite numbers and that the correctness checks that are meaningful
on the CPU (kernel vs reference, extraction path vs direct forward) passed.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
SECTIONS = ["fused_scoring", "kinetics_bf16", "i3d_inference", "i3d_train_step", "mars_scoring", "extraction"]


def _run(*args, tmp_path, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("OUT", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    r = _run("--cpu-smoke", "--out", str(tmp / "check.json"), tmp_path=tmp)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r, json.loads((tmp / "check.json").read_text())


def test_without_cuda_it_skips_quickly(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    out = tmp_path / "skip.json"
    r = _run("--out", str(out), tmp_path=tmp_path, timeout=60)
    assert r.returncode == 0
    assert "no CUDA device: skipped" in r.stdout
    assert json.loads(out.read_text()) == {"skipped": "no CUDA device"}


def test_cpu_smoke_writes_every_section(smoke):
    r, report = smoke
    assert report["mode"] == "cpu-smoke"
    assert list(report["sections"]) == SECTIONS
    for name, sec in report["sections"].items():
        assert sec["status"] not in ("error", "fail", "skipped"), (name, sec)
        assert sec["rows"] and sec["seconds"] >= 0
    assert all(math.isfinite(v) for v in _numbers(report["sections"]))
    assert report["targets"]["inference_clips_s"] == 7500 and report["targets"]["mars_scoring_s"] == 10
    assert "fused_scoring" in r.stdout and "status" in r.stdout  # the table is printed


def test_cpu_smoke_numbers(smoke):
    s = smoke[1]["sections"]
    assert s["fused_scoring"]["status"] == "pass"
    assert all(c["rel_max"] < 1e-2 and c["finite"] for c in s["fused_scoring"]["cases"])
    assert s["mars_scoring"]["rel_max_vs_eager"] < 1e-2
    assert s["mars_scoring"]["fused_s"] > 0 and s["mars_scoring"]["eager_s"] > 0
    assert s["extraction"]["status"] == "pass" and s["extraction"]["min_cos_path"] >= 0.9999
    assert 0.9 < s["kinetics_bf16"]["min_cos"] <= 1.0  # CPU bf16 autocast really ran (not fp32 twice)
    assert s["kinetics_bf16"]["rel_l2"] > 0
    assert s["i3d_inference"]["best_bf16_clips_s"] > 0 and s["i3d_train_step"]["finite_loss"]
