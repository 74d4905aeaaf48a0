"""Tests for reid_utils.models.fused_scoring (and .fused_kernel): the fused Triton kernel
of the learned aggregator.

Correctness runs the kernel on the CPU in Triton's interpreter. Triton picks
interpreter or compiled mode when it is *imported* (TRITON_INTERPRET), and
other tests of the session may import it first, so the interpreter runs in one
subprocess started with TRITON_INTERPRET=1 (a module-scoped fixture); it
computes every case at once and returns the numbers as JSON, which the tests
below check. Sizes are tiny (the interpreter executes each tile op in numpy).
Skipped, with the reason, when triton is not installed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reid_utils.models.aggregation import LearnedClipAggregator
from reid_utils.models.fused_scoring import (
    fused_similarity_matrix,
    kernel_flops_per_pair,
    should_use_kernel,
    triton_available,
)

ROOT = Path(__file__).resolve().parent.parent
needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed: the fused kernel cannot run")

WORKER = r"""
import json, torch, torch.nn as nn
torch.set_num_threads(1)
from reid_utils.eval.ranking import evaluate_rank
from reid_utils.models.fused_kernel import language_interpreted
from reid_utils.models.fused_scoring import fused_similarity_matrix

from benchmarks.references import scoring_model as model

def mean_cos(q, g):
    qn, gn = torch.nn.functional.normalize(q, dim=-1), torch.nn.functional.normalize(g, dim=-1)
    return torch.einsum("qid,gjd->qg", qn, gn) / (q.shape[1] * g.shape[1])

out = {"interpreted": language_interpreted()}
# 1. odd sizes: D, H not multiples of the 16-blocks, Mq != Mg, pairs not a multiple of BP
m = model(37, 29, 0, 4.0)
gen = torch.Generator().manual_seed(3)
q, g = torch.randn(5, 3, 37, generator=gen), torch.randn(7, 2, 37, generator=gen)
ref = m.similarity_matrix(q, g, progress=False, kernel=False)
fused = fused_similarity_matrix(m, q, g)
via = m.similarity_matrix(q, g, progress=False, kernel=True)
small = fused_similarity_matrix(m, q, g, max_chunk_pairs=8, max_programs=2)   # several chunks and blocks per program
_, alpha = m(q.repeat_interleave(7, 0), g.repeat(5, 1, 1))
out["odd"] = {"ref": ref.tolist(), "fused": fused.tolist(), "via": via.tolist(), "small": small.tolist(),
              "mean": mean_cos(q, g).tolist(), "alpha_ratio": float(alpha.max() / alpha.min()),
              "dtype": str(fused.dtype), "shape": list(fused.shape)}
# 2. ranking on a small synthetic problem: identities = cluster centres, clips = noisy views
D, H, M, n_id = 24, 20, 2, 8
gen = torch.Generator().manual_seed(7)
centres = torch.randn(n_id, D, generator=gen)
q_p = torch.arange(n_id)
g_p = torch.arange(n_id).repeat(3)
q = centres[q_p][:, None] + 2.0 * torch.randn(n_id, M, D, generator=gen)
g = centres[g_p][:, None] + 2.0 * torch.randn(len(g_p), M, D, generator=gen)
m = model(D, H, 1, 2.0)
res = {}
for name, S in (("ref", m.similarity_matrix(q, g, progress=False, kernel=False)),
                ("fused", fused_similarity_matrix(m, q, g))):
    cmc, mAP = evaluate_rank(-S.double().numpy(), q_p.numpy(), g_p.numpy(), torch.zeros(n_id, dtype=torch.long).numpy(),
                             torch.ones(len(g_p), dtype=torch.long).numpy(), max_rank=5)
    res[name] = {"mAP": float(mAP), "rank1": float(cmc[0]), "S": S.tolist()}
out["rank"] = res
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def interp():
    """Run WORKER once under TRITON_INTERPRET=1; its results as a dict."""
    if not triton_available():
        pytest.skip("triton is not installed: the fused kernel cannot run")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"interpreter run failed:\n{r.stderr[-3000:]}"
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _rel_to_scale(a, ref):
    a, ref = torch.tensor(a), torch.tensor(ref)
    return float((a - ref).abs().max() / ref.abs().max())


@needs_triton
def test_runs_in_the_interpreter(interp):
    assert interp["interpreted"] is True


@needs_triton
def test_odd_sizes_match_fp32_reference(interp):
    r = interp["odd"]
    assert r["shape"] == [5, 7] and r["dtype"] == "torch.float32"
    # the test is only meaningful if the learned weighting matters: alphas vary and the
    # reference differs from the plain mean of clip-pair cosines by far more than the tolerance
    assert r["alpha_ratio"] > 1.5
    assert _rel_to_scale(r["mean"], r["ref"]) > 10 * _rel_to_scale(r["fused"], r["ref"])
    assert _rel_to_scale(r["fused"], r["ref"]) < 1e-2


@needs_triton
def test_dispatch_and_chunking_give_the_same_numbers(interp):
    r = interp["odd"]
    assert torch.equal(torch.tensor(r["via"]), torch.tensor(r["fused"]))  # similarity_matrix(kernel=True)
    # several query chunks, several blocks per persistent program (workspace reused)
    assert torch.allclose(torch.tensor(r["small"]), torch.tensor(r["fused"]), rtol=0, atol=1e-6)


@needs_triton
def test_ranking_unchanged(interp):
    ref, fused = interp["rank"]["ref"], interp["rank"]["fused"]
    assert 0.0 < ref["mAP"] < 1.0  # a non-trivial ranking problem
    assert abs(100 * (fused["mAP"] - ref["mAP"])) <= 0.1
    assert _rel_to_scale(fused["S"], ref["S"]) < 1e-2


def test_selection_on_cpu():
    m = LearnedClipAggregator(8, 8).eval()
    q = torch.randn(2, 2, 8)
    assert not should_use_kernel(m, q, None)  # CPU: never automatic
    assert not should_use_kernel(m, q, False)
    m.use_fused_kernel = False
    assert not should_use_kernel(m, q, None)
    g = torch.randn(3, 2, 8)
    assert torch.equal(
        m.similarity_matrix(q, g, progress=False), m.similarity_matrix(q, g, progress=False, kernel=False)
    )


@needs_triton
def test_required_kernel_without_gpu_or_interpreter_raises():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    m = LearnedClipAggregator(8, 8).eval()
    q = torch.randn(2, 2, 8)
    with pytest.raises(RuntimeError, match="CUDA"):
        m.similarity_matrix(q, q, progress=False, kernel=True)


@needs_triton
def test_bad_arguments_raise():
    m = LearnedClipAggregator(8, 8).eval()
    q = torch.randn(2, 2, 8)
    with pytest.raises(ValueError, match="BP"):
        fused_similarity_matrix(m, q, q, blocks=(24, 16, 16, 4))
    with pytest.raises(ValueError, match="q must be"):
        fused_similarity_matrix(m, torch.randn(2, 8), q)
    with pytest.raises(ValueError, match="max_chunk_pairs"):
        fused_similarity_matrix(m, q, q, max_chunk_pairs=0)


def test_flop_count_formula():
    # 64 steps x (2*D*H + 2*H*H + 2*H) at D = H = 1024: the ~0.27 GFLOP per pair of the scoring-at-scale target
    f = kernel_flops_per_pair(8, 8, 1024, 1024)
    assert f == 64 * (4 * 1024 * 1024 + 2 * 1024)
    assert 0.26e9 < f < 0.28e9
