"""Throughput of ``LearnedClipAggregator.similarity_matrix`` in eval mode (CPU).

Prints pairs/s and the achieved FLOP rate as a fraction of a plain GEMM's FLOP
rate measured in the same process, same thread count (target: >= 0.5
with D = hidden = 256, M = 8).

FLOP count (the useful work of the *reference* recurrence, per sequence pair):

    M^2 steps x (2*D*H      first layer   W1 (r_{t-1} - c_t)
                 + 2*H*H    second layer
                 + 2*H      output layer
                 + 5*D + 4*H + 4)   elementwise: c_t, r - c_t, r update (3),
                                    two bias adds and ReLUs, softplus/A/Eq. 3

The fast path does the same matmul work (the first layer as one GEMM per
query clip instead of M^2 small ones) and less elementwise work (no D-wide
r); we credit it only with the reference count, so the ratio is honest.

The GEMM baseline is the best of (a) a (8192 x 256) @ (256 x 256) product,
the shape of the sequential second layer, and (b) a 1024^3 product. GEMM and
similarity timings are interleaved and the best of each is kept, because the
CPU may be shared with other jobs (the load average is printed).

Usage: ``python benchmarks/bench_aggregation.py [--dim 256 --hidden 256
--clips 8 --queries 64 --gallery 256 --chunk 1024 --threads N --compare]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reid_utils.models.aggregation import LearnedClipAggregator  # noqa: E402


def flops_per_pair(M: int, D: int, H: int) -> int:
    """Reference-recurrence FLOPs for one sequence pair (see module doc)."""
    return M * M * (2 * D * H + 2 * H * H + 2 * H + 5 * D + 4 * H + 4)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_rate(repeats: int = 5) -> tuple[float, str]:
    """Best GEMM FLOP rate (FLOP/s) over two shapes, and which shape gave it."""
    rates = {}
    for name, (m, k, n) in {"8192x256x256": (8192, 256, 256), "1024^3": (1024, 1024, 1024)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        out = torch.empty(m, n)
        t = best_time(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), repeats)
        rates[name] = 2 * m * k * n / t
    name = max(rates, key=rates.get)
    return rates[name], name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--gallery", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help="also time the reference recurrence")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    D, H, M = args.dim, args.hidden, args.clips
    model = LearnedClipAggregator(D, H).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics to fold
        for bn in (model.importance_net[1], model.importance_net[5]):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    q = torch.randn(args.queries, M, D)
    g = torch.randn(args.gallery, M, D)
    pairs = args.queries * args.gallery

    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"D={D} H={H} M={M}  Q={args.queries} G={args.gallery} ({pairs} pairs)  chunk={args.chunk}")

    # interleave GEMM and similarity timings (the cores are shared): best of each
    g_rate, g_name, t = 0.0, "", float("inf")
    for _ in range(args.repeats):
        r, name = gemm_rate(repeats=3)
        if r > g_rate:
            g_rate, g_name = r, name
        t = min(t, best_time(lambda: model.similarity_matrix(q, g, chunk=args.chunk, progress=False), 1))
    rate = pairs * flops_per_pair(M, D, H) / t
    print(f"plain GEMM ({g_name}):      {g_rate / 1e9:8.1f} GFLOP/s")
    print(
        f"similarity_matrix (fast):  {pairs / t:10.0f} pairs/s   {rate / 1e9:8.1f} GFLOP/s"
        f"   = {rate / g_rate:.2f} x GEMM   ({flops_per_pair(M, D, H) / 1e6:.2f} MFLOP/pair)"
    )
    if args.compare:
        qs, gs = q[: max(1, args.queries // 8)], g
        n = qs.shape[0] * gs.shape[0]
        t_ref = best_time(lambda: model.similarity_matrix(qs, gs, chunk=args.chunk, progress=False, fast=False), 1)
        r_ref = n * flops_per_pair(M, D, H) / t_ref
        print(
            f"reference recurrence:      {n / t_ref:10.0f} pairs/s   {r_ref / 1e9:8.1f} GFLOP/s"
            f"   = {r_ref / g_rate:.2f} x GEMM"
        )


if __name__ == "__main__":
    main()
