"""Aggregator trainings side by side (1 thread each) vs one after the other (all threads).

The corruption sweep trains one learned aggregator and a few top-t% models per
M_c^max level. ``reid_utils.experiments.aggregators.train_all`` runs them in
``cpu_count`` processes with ``cfg.agg.train_threads`` = 1 torch thread each. This
script times the same trainings (the default profile's learned aggregator: M = 8,
D = 256, hidden 128, P x K = 8 x 4, on random non-negative features) both ways in one
process tree and prints the ratio, plus whether the side-by-side models equal a
1-thread model trained alone (bit for bit).

Usage: ``python benchmarks/bench_agg_parallel.py [--jobs 2 --iterations 60]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reid_utils.training.aggregator import build_aggregator, train_aggregator  # noqa: E402

N, M, D, HIDDEN = 640, 8, 256, 128


def train_one(seed: int, iterations: int, threads: int) -> tuple[float, dict]:
    """Wall time and final weights of one learned-aggregator training."""
    g = torch.Generator().manual_seed(1000 + seed)
    feats = torch.rand(N, M, D, generator=g)
    pids = np.repeat(np.arange(N // 4), 4)
    model = build_aggregator("learned", D, hidden=HIDDEN, seed=seed)
    t0 = time.perf_counter()
    train_aggregator(model, feats, pids, iterations, 8, 4, 1e-3, 0.05, seed, progress=False, threads=threads)
    return time.perf_counter() - t0, model.state_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="trainings (default: one per core)")
    ap.add_argument("--iterations", type=int, default=60)
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} CPUs, load average {os.getloadavg()}, torch {torch.__version__}")
    print(f"{a.jobs} learned-aggregator trainings of {a.iterations} iterations (M={M}, D={D}, hidden={HIDDEN})")

    t0 = time.perf_counter()
    alone = [train_one(s, a.iterations, cores) for s in range(a.jobs)]
    serial = time.perf_counter() - t0
    print(f"  one after the other, {cores} threads each: {serial:6.1f} s")

    t0 = time.perf_counter()
    with ProcessPoolExecutor(min(a.jobs, cores), mp_context=get_context("spawn")) as pool:
        side = list(pool.map(train_one, range(a.jobs), [a.iterations] * a.jobs, [1] * a.jobs))
    parallel = time.perf_counter() - t0
    print(f"  side by side, 1 thread each:              {parallel:6.1f} s (process start-up included)")
    print(f"  speed-up: {serial / parallel:.2f}x")

    ref = train_one(0, a.iterations, 1)[1]
    same = all(torch.equal(ref[k], side[0][1][k]) for k in ref)
    multi = all(torch.equal(ref[k], alone[0][1][k]) for k in ref)
    print(f"  1-thread model side by side == 1-thread model alone: {same}")
    print(f"  1-thread model == {cores}-thread model: {multi}")


if __name__ == "__main__":
    main()
