"""Benchmark: k-reciprocal re-ranking at MARS size (1980 queries, 9330 gallery).

Prints wall time and peak memory above the inputs of
:func:`reid_utils.eval.reranking.re_ranking` (k1=20, k2=6, lambda=0.3), and checks
on a smaller problem that it returns the same matrix as the plain dense reference
``benchmarks/references.py`` (written from the reference's steps).

How memory is measured: the parent draws clustered features, computes the
three float32 distance matrices and saves them as .npy files. A fresh child
process loads them (np.load allocates nothing beyond the arrays), runs a tiny
warm-up, resets the kernel's peak-RSS counter (``echo 5 >
/proc/self/clear_refs``; VmHWM then restarts from the current RSS), records
its RSS, runs ``re_ranking`` and reads VmHWM. "Peak above inputs" = VmHWM -
RSS before the call: everything numpy, scipy and torch touched, the (Q, G)
float32 result included. If clear_refs is not permitted, the child falls back
to ``ru_maxrss`` (its peak since start, which after loading equals the inputs
plus the interpreter) and says so.

Targets: <= 1.5 GB above the inputs and <= 30 s on 2 cores.

Usage: ``python benchmarks/bench_reranking.py [--num-query 1980] [--num-gallery 9330]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.references import reference_re_ranking  # noqa: E402
from reid_utils.eval.distances import reranking_inputs  # noqa: E402
from reid_utils.eval.reranking import re_ranking  # noqa: E402


def clustered_features(seed, num_q, num_g, dim=128, num_ids=625, noise=0.7):
    """Features of ``num_ids`` identities (Gaussian clusters), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim)).astype(np.float32)
    q = centres[rng.integers(0, num_ids, num_q)] + noise * rng.normal(size=(num_q, dim)).astype(np.float32)
    g = centres[rng.integers(0, num_ids, num_g)] + noise * rng.normal(size=(num_g, dim)).astype(np.float32)
    return q, g


def _status(field: str) -> int:
    """A /proc/self/status field in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(folder: str):
    qg, qq, gg = (np.load(Path(folder) / f"{n}.npy") for n in ("qg", "qq", "gg"))
    re_ranking(qg[:5, :20], qq[:5, :5], gg[:20, :20])  # warm-up: lazy imports, thread pools
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM after clear_refs reset"
    except OSError:
        method = "ru_maxrss since process start (clear_refs not permitted)"
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    out = re_ranking(qg, qq, gg, k1=20, k2=6, lambda_value=0.3)
    wall = time.perf_counter() - t0
    peak = _status("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "wall_s": wall,
                "rss_before": rss0,
                "peak": peak,
                "method": method,
                "out_shape": list(out.shape),
                "out_dtype": str(out.dtype),
                "inputs_bytes": int(qg.nbytes + qq.nbytes + gg.nbytes),
            }
        )
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-query", type=int, default=1980)
    ap.add_argument("--num-gallery", type=int, default=9330)
    ap.add_argument(
        "--check-size",
        type=int,
        nargs=2,
        default=(250, 1000),
        help="query and gallery size of the comparison with the dense reference",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child)

    print(f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load avg before {os.getloadavg()}")
    # 1) same output as the dense reference on a smaller problem
    nq, ng = args.check_size
    qg, qq, gg = reranking_inputs(*clustered_features(args.seed + 1, nq, ng, num_ids=max(2, (nq + ng) // 18)))
    t0 = time.perf_counter()
    fast = re_ranking(qg, qq, gg)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_re_ranking(qg, qq, gg)
    t_ref = time.perf_counter() - t0
    print(
        f"check {nq}x{ng}: max |fast - reference| = {np.abs(fast - ref).max():.2e}, "
        f"allclose(rtol=1e-5, atol=1e-6) = {np.allclose(fast, ref, rtol=1e-5, atol=1e-6)}; "
        f"fast {t_fast:.2f} s, dense reference {t_ref:.2f} s"
    )

    # 2) MARS size, in a fresh process for a clean memory measurement
    Q, G = args.num_query, args.num_gallery
    with tempfile.TemporaryDirectory() as tmp:
        qg, qq, gg = reranking_inputs(*clustered_features(args.seed, Q, G))
        for name, arr in (("qg", qg), ("qq", qq), ("gg", gg)):
            np.save(Path(tmp) / f"{name}.npy", arr)
        del qg, qq, gg
        res = subprocess.run([sys.executable, __file__, "--child", tmp], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"child failed:\n{res.stderr}")
    r = json.loads(res.stdout.strip().splitlines()[-1])
    gb = 1024**3
    above = (r["peak"] - r["rss_before"]) / gb
    print(
        f"MARS size {Q} x {G}: inputs {r['inputs_bytes'] / gb:.3f} GB (float32), output "
        f"{tuple(r['out_shape'])} {r['out_dtype']}"
    )
    print(
        f"  wall time {r['wall_s']:.2f} s; peak memory above inputs {above:.3f} GB "
        f"(RSS before {r['rss_before'] / gb:.3f} GB, peak {r['peak'] / gb:.3f} GB; {r['method']})"
    )
    print(
        f"targets: <= 30 s {'met' if r['wall_s'] <= 30 else 'NOT met'}; "
        f"<= 1.5 GB {'met' if above <= 1.5 else 'NOT met'}"
    )
    print(f"load avg after {os.getloadavg()}")


if __name__ == "__main__":
    main()
