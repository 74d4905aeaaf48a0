"""Benchmark: evaluate_rank at MARS size (1980 queries x 9330 gallery).

Prints the wall time of :func:`reid_utils.eval.ranking.evaluate_rank` (both
protocols) and, in the same process on the same problem, the time of two
straightforward per-query loops implementing the same protocol:

* ``loop (torchreid style)``: argsort of the whole matrix, then one Python
  iteration per query, AP from a Python list of precisions, as the widely
  used ``eval_market1501`` does (written here from that description);
* ``loop (numpy per query)``: ``benchmarks/references.py``, one query at a time
  with a stable full sort, written from the two protocols' definitions (numpy
  per query); also the reference the fast results are checked against.

Targets: <= 1.5 s on 2 CPU cores and >= 20x faster than the loop.
The machine may be shared: the load average is printed with the figures.

Usage: ``python benchmarks/bench_evaluation.py [--repeats 3] [--seed 0]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.references import loop_evaluate  # noqa: E402
from reid_utils.eval.ranking import evaluate_rank, mars_official_gallery  # noqa: E402


def mars_like_problem(seed: int, num_q: int = 1980, num_g: int = 9330, num_ids: int = 625):
    """Random MARS-shaped problem: 6 cameras, ~15 gallery tracklets per id,
    5% junk (pid -1) and 5% distractors (pid 0) in the gallery; true matches
    are nearer on average so that CMC/mAP are far from chance and from 1."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(1, num_ids + 1, num_g)
    u = rng.random(num_g)
    g_pids[u < 0.05] = -1
    g_pids[(u >= 0.05) & (u < 0.10)] = 0
    q_cams, g_cams = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    dist = rng.random((num_q, num_g), dtype=np.float32)
    dist -= 0.1 * (q_pids[:, None] == g_pids[None, :])
    return dist, q_pids, g_pids, q_cams, g_cams


def loop_torchreid_style(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Per-query loop of the market1501 protocol, AP from a Python list."""
    num_q, num_g = distmat.shape
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap = [], []
    for q in range(num_q):
        order = indices[q]
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = matches[q][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        hits = raw.cumsum()
        precision = np.asarray([h / (i + 1.0) for i, h in enumerate(hits)])
        all_ap.append((precision * raw).sum() / raw.sum())
    return np.mean(np.asarray(all_cmc, dtype=np.float64), axis=0), float(np.mean(all_ap))


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    def loop_numpy(*a, **k):
        return loop_evaluate(*a, **k)[:2]

    problem = mars_like_problem(args.seed)
    Q, G = problem[0].shape
    print(
        f"problem: {Q} queries x {G} gallery, float32, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}, load avg before {os.getloadavg()}"
    )

    (cmc, mAP), t_fast = timed(lambda: evaluate_rank(*problem), args.repeats)
    # official MARS convention: the queries join the gallery (1980 x 11310)
    rng = np.random.default_rng(args.seed + 1)
    q_q = rng.random((Q, Q), dtype=np.float32)
    np.fill_diagonal(q_q, 0)
    official = mars_official_gallery(problem[0], q_q, problem[1], problem[2], problem[3], problem[4])
    (cmc_o, mAP_o), t_off = timed(lambda: evaluate_rank(*official, protocol="mars_official"), args.repeats)
    _, t_det = timed(lambda: evaluate_rank(*problem, return_details=True), 1)
    (cmc_l, mAP_l), t_loop = timed(lambda: loop_torchreid_style(*problem), 1)
    ref_np, t_np = timed(lambda: loop_numpy(*problem, max_rank=50), 1)
    ref_off, t_np_off = timed(lambda: loop_numpy(*official, max_rank=50, protocol="mars_official"), 1)

    assert np.allclose(cmc, cmc_l) and abs(mAP - mAP_l) < 1e-9, "fast != torchreid-style loop"
    assert np.allclose(cmc, ref_np[0]) and abs(mAP - ref_np[1]) < 1e-9, "fast != numpy loop"
    assert np.allclose(cmc_o, ref_off[0]) and abs(mAP_o - ref_off[1]) < 1e-9, "official != loop"
    best, med = min(t_fast), statistics.median(t_fast)
    print(
        f"results identical to both loops: torchreid R1 {cmc[0]:.4f} mAP {mAP:.4f}; "
        f"mars_official R1 {cmc_o[0]:.4f} mAP {mAP_o:.4f}"
    )
    print(f"evaluate_rank (torchreid)      : best {best:.3f} s, median {med:.3f} s over {args.repeats}")
    shape = f"{official[0].shape[0]} x {official[0].shape[1]}"
    print(f"evaluate_rank (mars_official, {shape}): best {min(t_off):.3f} s, median {statistics.median(t_off):.3f} s")
    print(f"evaluate_rank (return_details) : {t_det[0]:.3f} s")
    print(f"loop (torchreid style)         : {t_loop[0]:.3f} s  -> speed-up x{t_loop[0] / med:.1f} (median)")
    print(f"loop (numpy per query)         : {t_np[0]:.3f} s  -> speed-up x{t_np[0] / med:.1f} (median)")
    speedup_off = t_np_off[0] / statistics.median(t_off)
    print(f"loop (numpy, mars_official)    : {t_np_off[0]:.3f} s  -> speed-up x{speedup_off:.1f}")
    print(
        f"targets: <= 1.5 s {'met' if med <= 1.5 else 'NOT met'}; "
        f">= 20x vs torchreid-style loop {'met' if t_loop[0] / med >= 20 else 'NOT met'}"
    )
    print(f"load avg after {os.getloadavg()}")


if __name__ == "__main__":
    main()
