"""Learned-aggregation scoring at scale: reference path vs fused kernel.

Times ``LearnedClipAggregator.similarity_matrix`` in eval mode on the current
device, for

* the reference path: ``kernel=False``, the folded PyTorch fast path
  (fp32; what the CPU always runs), and
* the fast path: the fused Triton kernel (``reid_utils.models.fused_scoring``; bf16
  operands, fp32 accumulation and state), only when CUDA and triton are
  available,

and prints pairs/s, achieved TFLOP/s, that rate as a fraction of a plain GEMM
measured in the same process (bf16 on the GPU, fp32 on the CPU: the best
each path could hope for), and the extrapolated time of a MARS-size scoring
(1,980 queries x 9,330 gallery sequences, M = 8, D = hidden = 1024).

FLOP count (honest, per (query, gallery) pair): the importance network runs
T = Mq*Mg sequential steps, each a D -> H and an H -> H matmul and the H -> 1
output:

    FLOP/pair = Mq*Mg * (2*D*H + 2*H*H + 2*H)

(= 64 * (4*1024^2 + 2048) ~ 0.27 GFLOP at M = 8, D = H = 1024); elementwise
work (O(D + H) per step) is not counted, and no path is credited with work it
skips. The MARS extrapolation is 1,980 * 9,330 pairs at that shape divided by
the measured FLOP rate (exact when the benchmark runs at D = H = 1024, M = 8,
the default; otherwise it assumes the rate carries over).

The kernel's first call includes its JIT compilation; it is timed separately
("first call"). ``--compile-only`` compiles the kernel for sm_90 (Hopper)
without a GPU and prints the compile time and the register/spill usage
reported by the CUDA tools bundled with triton (on our CPU: ~2 s, wgmma
instructions, 250 registers and no spills with the default blocks when D and H
are multiples of 16; ~700 bytes of spills otherwise).

Performance notes (estimates, to be checked on a GPU). Per step a program of
BP pairs does 2 BP (DH + H^2) FLOPs and moves the weights (2 (DH + H^2) bytes,
from L2), its state (~22 BP H bytes) and, since each BH-wide output tile
re-reads its A operand, H / BH times the C_t and h_t tiles: at D = H = 1024,
BP = 64, BH = 128, ~36 FLOP/byte of mostly L2 traffic, likely L2-bound. The
workspace (~768 KiB per program, ~100 MiB for 132 programs) exceeds an H100's
50 MiB L2, so BP and the program count need tuning. Two ways up: keep the A
operands in shared memory across output tiles (Gluon or CUTLASS), and take the
first layer (u_t = W1' c_t, independent of the recurrence) out of the loop as
one large GEMM per query clip, leaving only the H x H layer sequential.

Usage: ``python benchmarks/scoring.py [--quick] [--dim 1024 --hidden 1024
--clips 8 --queries Q --gallery G --repeats R --threads N --compile-only]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reid_utils.models.aggregation import LearnedClipAggregator  # noqa: E402
from reid_utils.models.fused_scoring import (
    DEFAULT_BLOCKS_GPU,
    MARS_SHAPE,  # noqa: E402
    kernel_flops_per_pair,
    triton_available,
)

MARS_Q, MARS_G, MARS_M, MARS_D, MARS_H = MARS_SHAPE


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int) -> tuple[float, float]:
    """(first-call seconds, best of ``repeats`` further calls)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return first, best


def gemm_rate(device, repeats: int) -> tuple[float, str]:
    """Best plain-GEMM FLOP rate of this process: bf16 on CUDA, fp32 on the CPU."""
    if device.type == "cuda":
        shapes, dt = [(8192, 8192, 8192), (16384, 1024, 1024)], torch.bfloat16
    else:
        shapes, dt = [(1024, 1024, 1024), (2048, 1024, 1024)], torch.float32
    best, name = 0.0, ""
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dt)
        b = torch.randn(k, n, device=device, dtype=dt)
        _, t = timed(lambda a=a, b=b: a @ b, device, repeats)
        if 2 * m * k * n / t > best:
            best, name = 2 * m * k * n / t, f"{str(dt).replace('torch.', '')} {m}x{k}x{n}"
    return best, name


def make_model(D: int, H: int, device) -> LearnedClipAggregator:
    torch.manual_seed(0)
    model = LearnedClipAggregator(D, H).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics to fold
        for bn in (model.importance_net[1], model.importance_net[5]):
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
    return model.to(device)


def report(label, pairs, seconds, fpp, g_rate, first=None):
    rate = pairs * fpp / seconds
    mars = MARS_Q * MARS_G * kernel_flops_per_pair(MARS_M, MARS_M, MARS_D, MARS_H) / rate
    extra = f"   first call {first:.2f} s" if first is not None else ""
    print(
        f"{label:<28} {pairs / seconds:12.0f} pairs/s  {rate / 1e12:8.4f} TFLOP/s  "
        f"{rate / g_rate:6.3f} x GEMM   MARS-size: {mars:12.1f} s ({mars / 3600:.2f} h){extra}"
    )


def compile_only(args) -> None:
    """Compile the kernel for sm_90 without a GPU; print time and ptxas resource usage."""
    import subprocess

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from reid_utils.models.fused_kernel import KERNEL

    BP, BK, BH, warps = DEFAULT_BLOCKS_GPU
    names = [
        "q_ptr",
        "g_ptr",
        "cos_ptr",
        "w1_ptr",
        "b1_ptr",
        "w2_ptr",
        "b2_ptr",
        "w3_ptr",
        "b3",
        "out_ptr",
        "c_ptr",
        "h_ptr",
        "v_ptr",
        "e_ptr",
        "n_pairs",
        "n_gal",
        "n_blocks",
        "MQ",
        "MG",
        "D",
        "H",
    ]
    types = [
        "*bf16",
        "*bf16",
        "*fp32",
        "*bf16",
        "*fp32",
        "*bf16",
        "*fp32",
        "*fp32",
        "fp32",
        "*fp32",
        "*bf16",
        "*bf16",
        "*fp32",
        "*fp32",
    ] + ["i32"] * 7
    sig = dict(zip(names, types), BP="constexpr", BK="constexpr", BH="constexpr", EMULATE_BF16="constexpr")
    # the specialisation a launch gets when pointers are 16-byte aligned and D, H multiples of 16
    aligned = [i for i, n in enumerate(names) if n.endswith("_ptr")] + [names.index("D"), names.index("H")]
    src = ASTSource(
        KERNEL,
        sig,
        constexprs={"BP": BP, "BK": BK, "BH": BH, "EMULATE_BF16": False},
        attrs={(i,): [["tt.divisibility", 16]] for i in aligned},
    )
    t0 = time.perf_counter()
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": 2})
    dt = time.perf_counter() - t0
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fused_scoring_{os.getpid()}.cubin")
    with open(path, "wb") as f:
        f.write(k.asm["cubin"])
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    usage = subprocess.run([tool, "--dump-resource-usage", path], capture_output=True, text=True).stdout
    os.unlink(path)
    line = next((ln.strip() for ln in usage.splitlines() if "REG:" in ln), "n/a")
    print(
        f"compile-only (sm_90, D and H multiples of 16, blocks BP={BP} BK={BK} BH={BH}, {warps} warps): {dt:.1f} s; "
        f"wgmma instructions: {k.asm['ptx'].count('wgmma.mma_async')}; "
        f"shared memory {k.metadata.shared} B; {line.split(' LOCAL')[0]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=MARS_D)
    ap.add_argument("--hidden", type=int, default=MARS_H)
    ap.add_argument("--clips", type=int, default=MARS_M)
    ap.add_argument("--queries", type=int, default=None, help="default: 64 on CUDA, 8 on the CPU")
    ap.add_argument("--gallery", type=int, default=None, help="default: 2048 on CUDA, 32 on the CPU")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (< 30 s on our CPU)")
    ap.add_argument(
        "--compile-only", action="store_true", help="also compile the kernel for sm_90 without a GPU (needs triton)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    Q = args.queries or (64 if on_gpu else (2 if args.quick else 8))
    G = args.gallery or (2048 if on_gpu else (16 if args.quick else 32))
    repeats = 1 if args.quick else args.repeats
    D, H, M = args.dim, args.hidden, args.clips
    fpp = kernel_flops_per_pair(M, M, D, H)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    name = torch.cuda.get_device_name(device) if on_gpu else "CPU"
    tver = __import__("triton").__version__ if triton_available() else "not installed"
    print(
        f"device {name}; torch {torch.__version__}; triton {tver}; threads {torch.get_num_threads()}; "
        f"load average {load:.2f}"
    )
    print(
        f"D={D} H={H} M={M}  Q={Q} G={G} ({Q * G} pairs)  {fpp / 1e9:.4f} GFLOP/pair "
        f"[= M^2 (2DH + 2H^2 + 2H)]; MARS-size = {MARS_Q} x {MARS_G} pairs at M={MARS_M}, "
        f"D=H={MARS_D}: {MARS_Q * MARS_G * kernel_flops_per_pair(8, 8, 1024, 1024) / 1e15:.2f} PFLOP"
    )

    g_rate, g_name = gemm_rate(device, repeats)
    print(f"plain GEMM ({g_name}): {g_rate / 1e12:.4f} TFLOP/s")
    model = make_model(D, H, device)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(Q, M, D, generator=gen).to(device)
    g = torch.randn(G, M, D, generator=gen).to(device)

    first, t = timed(lambda: model.similarity_matrix(q, g, progress=False, kernel=False), device, repeats)
    report("reference (torch, fp32)", Q * G, t, fpp, g_rate)
    if on_gpu and triton_available():
        ref = model.similarity_matrix(q, g, progress=False, kernel=False)
        first, t = timed(lambda: model.similarity_matrix(q, g, progress=False, kernel=True), device, repeats)
        report("fused kernel (bf16/fp32)", Q * G, t, fpp, g_rate, first=first)
        S = model.similarity_matrix(q, g, progress=False, kernel=True)
        err = float((S - ref).abs().max() / ref.abs().max())
        print(f"fused vs reference: max |diff| / max |ref| = {err:.2e} (contract: < 1e-2)")
    else:
        why = "no CUDA device" if not on_gpu else "triton is not installed"
        print(
            f"fused kernel: not run ({why}). GPU TIMING IS OWED: run this script on a CUDA machine "
            f"with triton to measure the fast path (target: MARS-size <= 10 s on an H100)."
        )
    g2, _ = gemm_rate(device, repeats)
    if g2 > 1.1 * g_rate:
        print(
            f"note: the GEMM rate measured again after the runs is {g2 / 1e12:.4f} TFLOP/s "
            f"(+{100 * (g2 / g_rate - 1):.0f} %): the device is shared or clocks changed; "
            f"divide the 'x GEMM' figures by {g2 / g_rate:.2f} for the conservative ratio"
        )
    if args.compile_only:
        if triton_available():
            compile_only(args)
        else:
            print("compile-only: triton is not installed")


if __name__ == "__main__":
    main()
