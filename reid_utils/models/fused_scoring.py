"""Fused Triton kernel for the learned aggregator's eval-mode scoring (Sec. 3.1, Eqs. 1-4).

What it computes. Exactly the function of
``LearnedClipAggregator.similarity_matrix`` in eval mode (BatchNorm folded,
dropout off), for every query x gallery sequence pair, T = Mq*Mg clip pairs
visited in row-major order t = i*Mg + j:

    c_t     = f_q,i * f_g,j                     (L2-normalised clip features)
    alpha_t = softplus(w3 . relu(W2' relu(W1' (r_{t-1} - c_t) + b1') + b2') + b3)   (Eq. 1)
    A_t     = A_{t-1} + alpha_t,   r_t = r_{t-1} + alpha_t / A_t (c_t - r_{t-1})  (Eq. 2)
    s       = sum_d r_T[d] = sum_t alpha_t cos_t / A_T                             (Eqs. 3-4)

with r_0 = 0, A_0 = 0 (the alpha_1 choice documented in ``aggregation``) and
W', b' the Linear layers with their eval-mode BatchNorm folded in.

The algebra. The first layer is linear in r_{t-1} - c_t:
W1'(r_{t-1} - c_t) = v_{t-1} - u_t with u_t = W1' c_t and v_t = W1' r_t; and
since r_t is an alpha-weighted running mean of the c's, v_t is the same running
mean of the u's, v_t = v_{t-1} + (alpha_t / A_t) e_t with e_t = u_t - v_{t-1}.
So the D-wide r is never formed: each step is

    u_t = C_t W1'            (BP x D) @ (D x H)   bf16 operands, fp32 accumulate
    e_t = u_t - v_{t-1}                            fp32
    h_t = relu(b1' - e_t)                          (first layer, = relu(v - u + b1))
    z_t = relu(h_t W2' + b2')  (BP x H) @ (H x H) bf16 operands, fp32 accumulate
    alpha_t = softplus(z_t . w3 + b3)              fp32
    v_t = v_{t-1} + alpha_t / A_t * e_t            fp32

and the similarity is Eq. 3 with the clip-pair cosines cos_t, computed in fp32
by one GEMM per chunk of queries on the host side of the kernel (so s is an
alpha-weighted mean of exact cosines; bf16 only perturbs the weights).

The blocking. One Triton program owns a block of BP (query, gallery) pairs
(consecutive in the row-major pair order p = qi*G + gi of a chunk of
queries) and walks the T steps of all its pairs in lock step, so the weights
W1', W2' streamed per step are reused BP times. The grid is persistent
(about 2 programs per SM); each program keeps the running state of its block
in its own slice of a workspace that it rewrites every step: v_{t-1} and e_t
(fp32, BP x H each), and the step's bf16 A operands C_t (BP x D) and h_t
(BP x H). That slice is small and hot, so it lives in the on-chip L1/L2
caches rather than DRAM when it fits there (the smoke/default profiles'
widths easily; at D = hidden = 1024 with BP = 64: 768 KiB per program,
~100 MiB for 132 programs, twice the H100's 50 MiB L2, so tuning BP and the
number of programs on the GPU is owed). Keeping the state in registers or
shared memory instead is impossible at that width: a useful block (BP >= 64
rows for the tensor cores, more to amortise the per-step weight traffic of
2(DH + H^2) bytes) needs >= 640 KiB of state, more than an SM holds. Within a
step the H outputs are tiled by BH and the reductions by BK (masks handle D,
H and the pair count not multiples of the blocks).

Each step makes four passes over the block: (0) C_t = f_q,i * f_g,j gathered
and multiplied once (bf16), (1) the first GEMM, e_t and h_t, (2) the second
GEMM and the output logit, (3) the v update once alpha_t is known;
``tl.debug_barrier`` orders one pass's workspace writes before the next's
reads. The per-pair bookkeeping (A_t, sum alpha cos) stays in registers for
the whole walk.

Compile-only check (no GPU was available; ``benchmarks/scoring.py
--compile-only``): for sm_90 the kernel compiles in ~2 s on our CPU to wgmma
(Hopper tensor-core) instructions; with the default blocks and the
specialisation Triton applies at launch when D and H are multiples of 16,
ptxas reports 250 registers and no spills (without that specialisation, i.e.
odd D or H, ~700 bytes of spills). GPU timing and tuning are owed.

Performance notes (estimates, to be checked on a GPU). Per step, a program
of BP pairs does 2 BP (DH + H^2) FLOPs and moves the weights (2 (DH + H^2)
bytes, from L2), its state (~22 BP H bytes) and, because each output tile of
BH columns re-reads its A operand, (H / BH) times the C_t tile (2 BP D bytes)
and the h_t tile (2 BP H bytes). At D = H = 1024, BP = 64, BH = 128 that is
~7.5 MB per 0.27 GFLOP, ~36 FLOP/byte of mostly L2 traffic: likely L2-bound
below the bf16 peak. Two ways up, both needing a GPU to tune: (a) keep the A
operands in shared memory across the output tiles (Triton's Gluon dialect or
CUTLASS; the standard Triton language cannot pin them), and (b) take the
first layer out of the sequential loop, since u_t does not depend on the
recurrence: for query clip i, W1' diag(f_q,i) (H x D) times all gallery clips
(D x G Mg) is one large GEMM at cuBLAS speed; the kernel would then read u_t
(bf16, 2 H bytes per pair-step) and run only the H x H layer sequentially.

Accuracy contract (tested in ``tests/test_fused_scoring.py`` on the CPU
under the Triton interpreter): every similarity within 1e-2 of the fp32
reference relative to the scale of the matrix (max |S_ref|), and the ranking
(mAP on a synthetic problem) within 0.1 points of the reference's. Error
sources: features, c_t, W1', h_t and W2' rounded to bf16 (relative 2^-9 each),
fp32 accumulation and state; the cosines in Eq. 3 are fp32.

Interpreter note. Triton's interpreter (``TRITON_INTERPRET=1``, CPU) stores
bfloat16 as raw uint16 and its ``tl.dot`` multiplies the bit patterns
(triton-lang/triton#11584, "not supported yet"; its debugging guide says to cast
bf16 to fp32). In interpreter mode the kernel therefore rounds each operand
to bf16 and upcasts it to fp32 before an IEEE fp32 ``tl.dot``: products of two
bf16 values are exact in fp32 and the accumulation is fp32, so this computes
the same numbers as the GPU's bf16 dot with fp32 accumulation (up to the
summation order).

Selection: :func:`should_use_kernel`, called by
``LearnedClipAggregator.similarity_matrix`` (argument ``kernel``, class
attribute ``use_fused_kernel``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "triton_available",
    "should_use_kernel",
    "fused_similarity_matrix",
    "kernel_flops_per_pair",
    "DEFAULT_BLOCKS_GPU",
    "DEFAULT_BLOCKS_INTERPRETER",
]

try:  # optional dependency: the module imports (and the reference path works) without it
    import triton
    import triton.language as tl

    _TRITON_ERROR: Exception | None = None
except Exception as exc:  # pragma: no cover - exercised only without triton
    triton = tl = None
    _TRITON_ERROR = exc

#: (BP pairs per program, BK reduction block, BH output block, num_warps) on the GPU.
#: A starting point, not tuned (no GPU was available when this was written).
DEFAULT_BLOCKS_GPU = (64, 32, 128, 8)
#: Small blocks for the CPU interpreter (tl.dot needs every dimension >= 16).
DEFAULT_BLOCKS_INTERPRETER = (16, 16, 16, 4)
_TINY = float(torch.finfo(torch.float32).tiny)


def triton_available() -> bool:
    """True when ``triton`` imported."""
    return triton is not None


#: MARS at the paper's sizes: queries, gallery tracklets, clips per tracklet M, feature dim D,
#: hidden width (torchreid split of the MARS test set; Sec. 4.2's D = hidden = 1024, M = 8).
MARS_SHAPE = (1980, 9330, 8, 1024, 1024)


def kernel_flops_per_pair(Mq: int, Mg: int, D: int, H: int) -> int:
    """Matmul FLOPs of one sequence pair: T = Mq*Mg steps x (2*D*H + 2*H*H + 2*H).

    The two GEMMs and the H -> 1 output of the importance net per step; the
    elementwise work (O(D + H) per step) is not counted.
    """
    return Mq * Mg * (2 * D * H + 2 * H * H + 2 * H)


def should_use_kernel(model, q: torch.Tensor, kernel: bool | None = None) -> bool:
    """Whether ``similarity_matrix`` takes the fused path.

    Args:
        model: the ``LearnedClipAggregator``; its attribute ``use_fused_kernel``
            (default True) set to False disables the automatic choice.
        q: the query bank (its device, or the model's, must be CUDA).
        kernel: None = automatic (CUDA and triton importable, or the
            interpreter when it is required - never automatically on a
            CPU run); True = required (raises if it
            cannot run); False = never.
    """
    if kernel is False:
        return False
    p = next(iter(model.parameters()), None)
    on_cuda = (p is not None and p.is_cuda) or q.is_cuda
    if kernel is None:
        return bool(getattr(model, "use_fused_kernel", True)) and on_cuda and triton_available()
    if not triton_available():
        raise RuntimeError(f"similarity_matrix(kernel=True): triton is not importable ({_TRITON_ERROR})")
    if not (on_cuda or _language_interpreted()):
        raise RuntimeError(
            "similarity_matrix(kernel=True): needs CUDA tensors, or a process that "
            "imported triton with TRITON_INTERPRET=1 (Triton's CPU interpreter)"
        )
    return True


# --------------------------------------------------------------------------- #
# the kernel (decorated lazily: TRITON_INTERPRET is read when triton.jit runs)
# --------------------------------------------------------------------------- #
def _scoring_kernel(
    q_ptr,
    g_ptr,
    cos_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    w3_ptr,
    b3,
    out_ptr,
    c_ptr,
    h_ptr,
    v_ptr,
    e_ptr,
    n_pairs,
    n_gal,
    n_blocks,
    MQ,
    MG,
    D,
    H,
    BP: tl.constexpr,
    BK: tl.constexpr,
    BH: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
):
    """One persistent program: blocks of BP pairs, T = MQ*MG sequential steps each.

    q (Qc, MQ, D) bf16, g (G, MG, D) bf16 (normalised); cos (n_pairs, T) fp32;
    w1 (D, H) bf16 = W1'^T, w2 (H, H) bf16 = W2'^T, b1, b2, w3 (H,) fp32;
    out (n_pairs,) fp32; workspaces per program: c (BP, D) bf16, h (BP, H)
    bf16, v and e (BP, H) fp32.
    """
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    rows = tl.arange(0, BP)
    kk = tl.arange(0, BK)
    hh = tl.arange(0, BH)
    wsh = pid * BP * H + rows[:, None] * H  # this program's (BP, H) workspace rows
    wsd = pid * BP * D + rows[:, None] * D  # and its (BP, D) one
    T = MQ * MG
    for blk in range(pid, n_blocks, nprog):
        p = blk * BP + rows
        pmask = p < n_pairs
        qi = p // n_gal  # 32-bit offsets (host checks the sizes)
        gi = p % n_gal
        A = tl.zeros((BP,), dtype=tl.float32)
        num = tl.zeros((BP,), dtype=tl.float32)
        for t in range(T):
            qrow = (qi * MQ + t // MG) * D
            grow = (gi * MG + t % MG) * D
            # phase 0: C_t = f_q,i * f_g,j for the block, once per step (bf16)
            for k0 in range(0, D, BK):
                ks = k0 + kk
                m2 = pmask[:, None] & (ks < D)[None, :]
                fq = tl.load(q_ptr + qrow[:, None] + ks[None, :], mask=m2, other=0.0).to(tl.float32)
                fg = tl.load(g_ptr + grow[:, None] + ks[None, :], mask=m2, other=0.0).to(tl.float32)
                tl.store(c_ptr + wsd + ks[None, :], (fq * fg).to(tl.bfloat16), mask=m2)
            tl.debug_barrier()
            # phase 1: u_t = C_t W1' (bf16 x bf16 -> fp32); e_t = u_t - v_{t-1}; h_t = relu(b1 - e_t)
            for n0 in range(0, H, BH):
                cols = n0 + hh
                cmask = cols < H
                acc = tl.zeros((BP, BH), dtype=tl.float32)
                for k0 in range(0, D, BK):
                    ks = k0 + kk
                    kmask = ks < D
                    c = tl.load(c_ptr + wsd + ks[None, :], mask=pmask[:, None] & kmask[None, :], other=0.0)
                    w = tl.load(
                        w1_ptr + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0
                    )
                    if EMULATE_BF16:
                        acc = tl.dot(c.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
                    else:
                        acc = tl.dot(c, w, acc)
                smask = pmask[:, None] & cmask[None, :]
                v = tl.load(v_ptr + wsh + cols[None, :], mask=smask & (t > 0), other=0.0)  # v_0 = 0
                e = acc - v
                b1 = tl.load(b1_ptr + cols, mask=cmask, other=0.0)
                tl.store(e_ptr + wsh + cols[None, :], e, mask=smask)
                tl.store(h_ptr + wsh + cols[None, :], tl.maximum(b1[None, :] - e, 0.0).to(tl.bfloat16), mask=smask)
            tl.debug_barrier()
            # phase 2: alpha_t = softplus(relu(h_t W2' + b2) . w3 + b3)
            logit = tl.zeros((BP,), dtype=tl.float32)
            for n0 in range(0, H, BH):
                cols = n0 + hh
                cmask = cols < H
                acc = tl.zeros((BP, BH), dtype=tl.float32)
                for k0 in range(0, H, BK):
                    ks = k0 + kk
                    kmask = ks < H
                    h = tl.load(h_ptr + wsh + ks[None, :], mask=pmask[:, None] & kmask[None, :], other=0.0)
                    w = tl.load(
                        w2_ptr + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0
                    )
                    if EMULATE_BF16:
                        acc = tl.dot(h.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
                    else:
                        acc = tl.dot(h, w, acc)
                b2 = tl.load(b2_ptr + cols, mask=cmask, other=0.0)
                w3 = tl.load(w3_ptr + cols, mask=cmask, other=0.0)
                z = tl.maximum(acc + b2[None, :], 0.0)
                logit += tl.sum(z * w3[None, :], axis=1)
            x = logit + b3
            # softplus, stable: max(x, 0) + log(1 + exp(-|x|)); exp(x) where that underflows
            sp = tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))
            alpha = tl.where(x < -15.0, tl.exp(x), sp)
            A += alpha
            cos = tl.load(cos_ptr + p * T + t, mask=pmask, other=0.0)
            num += alpha * cos
            # phase 3: v_t = v_{t-1} + alpha_t / A_t * e_t (Eq. 2 on W1' r)
            wt = alpha / tl.maximum(A, 1.1754943508222875e-38)
            for n0 in range(0, H, BH):
                cols = n0 + hh
                smask = pmask[:, None] & (cols < H)[None, :]
                v = tl.load(v_ptr + wsh + cols[None, :], mask=smask & (t > 0), other=0.0)
                e = tl.load(e_ptr + wsh + cols[None, :], mask=smask, other=0.0)
                tl.store(v_ptr + wsh + cols[None, :], v + wt[:, None] * e, mask=smask)
            tl.debug_barrier()
        tl.store(out_ptr + p, num / tl.maximum(A, 1.1754943508222875e-38), mask=pmask)


def _language_interpreted() -> bool:
    """True when this process imported triton with ``TRITON_INTERPRET=1`` (CPU interpreter).

    Triton decides at import time: its language builtins are then interpreter
    functions, so the mode cannot be switched later in the same process.
    """
    return triton is not None and type(tl.zeros).__name__ == "InterpretedFunction"


_KERNEL = triton.jit(_scoring_kernel) if triton is not None else None


# --------------------------------------------------------------------------- #
# host side
# --------------------------------------------------------------------------- #
def _num_programs(device: torch.device, n_blocks: int, interpret: bool, max_programs: int | None) -> int:
    if max_programs is None:
        if interpret:
            max_programs = 4
        else:
            max_programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(int(n_blocks), int(max_programs)))


@torch.no_grad()
def fused_similarity_matrix(
    model,
    q: torch.Tensor,
    g: torch.Tensor,
    *,
    blocks: tuple[int, int, int, int] | None = None,
    max_programs: int | None = None,
    max_chunk_pairs: int = 1 << 22,
    progress: bool = False,
) -> torch.Tensor:
    """Eval-mode similarities of every query x gallery pair with the fused kernel.

    Args:
        model: a ``LearnedClipAggregator`` (its folded eval-mode weights are used;
            its training flag is irrelevant, as for ``similarity_matrix``).
        q: (Q, Mq, D) query clip features; g: (G, Mg, D) gallery clip features
            (any float dtype; normalised here).
        blocks: (BP, BK, BH, num_warps); defaults
            :data:`DEFAULT_BLOCKS_GPU` / :data:`DEFAULT_BLOCKS_INTERPRETER`.
            BP, BK, BH: powers of two >= 16.
        max_programs: persistent grid size cap (default 2 per SM; 4 in the interpreter).
        max_chunk_pairs: queries are processed in chunks of about this many
            pairs (the fp32 clip-pair cosines of a chunk, pairs x Mq*Mg, are
            the main temporary).
        progress: tqdm bar over the query chunks.

    Returns:
        (Q, G) similarities on ``q``'s device, in the model's dtype.
    """
    from tqdm.auto import tqdm

    who = "fused_similarity_matrix"
    if not triton_available():
        raise RuntimeError(f"{who}: triton is not importable ({_TRITON_ERROR})")
    for name, x in (("q", q), ("g", g)):
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != model.dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{who}: {name} must be a tensor of shape (N, M, {model.dim}), got {shape}")
    interpret = _language_interpreted()
    BP, BK, BH, warps = blocks or (DEFAULT_BLOCKS_INTERPRETER if interpret else DEFAULT_BLOCKS_GPU)
    for name, b in (("BP", BP), ("BK", BK), ("BH", BH)):
        if int(b) < 16 or int(b) & (int(b) - 1):
            raise ValueError(f"{who}: blocks {name} must be a power of two >= 16, got {b}")
    if int(max_chunk_pairs) < 1 or (max_programs is not None and int(max_programs) < 1):
        raise ValueError(f"{who}: max_chunk_pairs and max_programs must be >= 1, got {max_chunk_pairs}, {max_programs}")
    p0 = next(iter(model.parameters()))
    device = torch.device("cpu") if interpret else p0.device
    if not interpret and device.type != "cuda":
        raise RuntimeError(
            f"{who}: the model must be on CUDA (or triton imported with "
            f"TRITON_INTERPRET=1 to use the CPU interpreter), got {device}"
        )
    w1t, b1, w2t, b2, w3, b3 = (x.to(device) for x in model._folded(torch.float32))
    w1t, w2t = w1t.to(torch.bfloat16).contiguous(), w2t.to(torch.bfloat16).contiguous()
    b3 = float(b3)
    Q, Mq, D = q.shape
    G, Mg, _ = g.shape
    H, T = int(model.hidden), Mq * Mg
    qn = F.normalize(q.to(device=device, dtype=torch.float32), dim=-1)
    gn = F.normalize(g.to(device=device, dtype=torch.float32), dim=-1)
    qb, gb = qn.to(torch.bfloat16).contiguous(), gn.to(torch.bfloat16).contiguous()
    g_flat = gn.reshape(G * Mg, D).t()
    lim = 2**31 - 1  # the kernel's offsets are int32
    if G * Mg * D > lim or G * T > lim or H * max(D, H) > lim:
        raise ValueError(f"{who}: gallery bank too large for int32 offsets (G*Mg*D = {G * Mg * D}); split the gallery")
    rows = max(1, min(Q, int(max_chunk_pairs) // max(1, G), lim // (Mq * D), lim // max(1, G * T)))
    out = torch.empty(Q, G, dtype=p0.dtype, device=q.device)
    ws_programs = _num_programs(device, math.ceil(rows * G / BP), interpret, max_programs)
    v_ws = torch.empty(ws_programs, BP, H, dtype=torch.float32, device=device)
    e_ws = torch.empty_like(v_ws)
    h_ws = torch.empty(ws_programs, BP, H, dtype=torch.bfloat16, device=device)
    c_ws = torch.empty(ws_programs, BP, D, dtype=torch.bfloat16, device=device)
    for s in tqdm(range(0, Q, rows), disable=not progress, leave=False, desc="fused scoring"):
        qc = qb[s : s + rows]
        Qc = qc.shape[0]
        n_pairs = Qc * G
        cos = (qn[s : s + rows].reshape(Qc * Mq, D) @ g_flat).view(Qc, Mq, G, Mg)
        cos = cos.permute(0, 2, 1, 3).reshape(n_pairs, T).contiguous()
        res = torch.empty(n_pairs, dtype=torch.float32, device=device)
        n_blocks = math.ceil(n_pairs / BP)
        grid = (min(ws_programs, n_blocks),)
        _KERNEL[grid](
            qc,
            gb,
            cos,
            w1t,
            b1,
            w2t,
            b2,
            w3,
            b3,
            res,
            c_ws,
            h_ws,
            v_ws,
            e_ws,
            n_pairs,
            G,
            n_blocks,
            Mq,
            Mg,
            D,
            H,
            BP=BP,
            BK=BK,
            BH=BH,
            EMULATE_BF16=interpret,
            num_warps=warps,
            num_stages=2,
        )
        out[s : s + Qc] = res.view(Qc, G).to(device=q.device, dtype=out.dtype)
    return out
