"""Fused eval-mode scoring of the learned aggregator on the GPU (Sec. 3.1, Eqs. 1-4).

Computes exactly the function of ``LearnedClipAggregator.similarity_matrix`` in
eval mode for every query x gallery pair, with the kernel of
``reid_utils.models.fused_kernel``:

* BatchNorm folded into the Linear layers (W', b'), dropout off; r_0 = 0,
  A_0 = 0 (the alpha_1 choice of ``reid_utils.models.learned_aggregator``).
* W1 linearity: W1'(r_{t-1} - c_t) = v_{t-1} - u_t with u_t = W1' c_t and
  v_t = W1' r_t the same alpha-weighted running mean of the u's (Eq. 2), so
  the D-wide r is never formed; alpha_t by Eq. 1 from v_{t-1} - u_t.
* s = sum_t alpha_t cos_t / A_T (Eqs. 3-4) with the clip-pair cosines from one
  fp32 GEMM per query chunk on the host, so s is an alpha-weighted mean of
  exact cosines.
* bf16 operands (features, c_t, W1', h_t, W2') with fp32 accumulation and
  fp32 state (v, e, A, sum alpha cos).

Selection: :func:`should_use_kernel`, called by
``LearnedClipAggregator.similarity_matrix`` (argument ``kernel``, class
attribute ``use_fused_kernel``). Timing and compile checks:
``benchmarks/scoring.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reid_utils.models.fused_kernel import KERNEL, TRITON_ERROR, language_interpreted, triton_available

__all__ = [
    "triton_available",
    "should_use_kernel",
    "fused_similarity_matrix",
    "kernel_flops_per_pair",
    "DEFAULT_BLOCKS_GPU",
    "DEFAULT_BLOCKS_INTERPRETER",
    "MARS_SHAPE",
]

#: (BP pairs per program, BK reduction block, BH output block, num_warps) on the GPU.
#: A starting point, not tuned (no GPU was available when this was written).
DEFAULT_BLOCKS_GPU = (64, 32, 128, 8)
#: Small blocks for the CPU interpreter (tl.dot needs every dimension >= 16).
DEFAULT_BLOCKS_INTERPRETER = (16, 16, 16, 4)

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
        raise RuntimeError(f"similarity_matrix(kernel=True): triton is not importable ({TRITON_ERROR})")
    if not (on_cuda or language_interpreted()):
        raise RuntimeError(
            "similarity_matrix(kernel=True): needs CUDA tensors, or a process that "
            "imported triton with TRITON_INTERPRET=1 (Triton's CPU interpreter)"
        )
    return True


def _num_programs(device: torch.device, n_blocks: int, interpret: bool, max_programs: int | None) -> int:
    if max_programs is None:
        if interpret:
            max_programs = 4
        else:
            max_programs = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(int(n_blocks), int(max_programs)))


def _check_args(model, q, g, blocks, max_programs, max_chunk_pairs, interpret: bool) -> tuple[int, int, int, int]:
    """Validate the arguments of :func:`fused_similarity_matrix`; return (BP, BK, BH, num_warps)."""
    who = "fused_similarity_matrix"
    for name, x in (("q", q), ("g", g)):
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != model.dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{who}: {name} must be a tensor of shape (N, M, {model.dim}), got {shape}")
    BP, BK, BH, warps = blocks or (DEFAULT_BLOCKS_INTERPRETER if interpret else DEFAULT_BLOCKS_GPU)
    for name, b in (("BP", BP), ("BK", BK), ("BH", BH)):
        if int(b) < 16 or int(b) & (int(b) - 1):
            raise ValueError(f"{who}: blocks {name} must be a power of two >= 16, got {b}")
    if int(max_chunk_pairs) < 1 or (max_programs is not None and int(max_programs) < 1):
        raise ValueError(f"{who}: max_chunk_pairs and max_programs must be >= 1, got {max_chunk_pairs}, {max_programs}")
    return BP, BK, BH, warps


def _operands(model, q: torch.Tensor, g: torch.Tensor, device: torch.device):
    """Folded weights (W1'^T, W2'^T in bf16; biases and w3 fp32; b3 a float) and the
    L2-normalised features, fp32 (qn, gn) and bf16 (qb, gb)."""
    w1t, b1, w2t, b2, w3, b3 = (x.to(device) for x in model._folded(torch.float32))
    w1t, w2t = w1t.to(torch.bfloat16).contiguous(), w2t.to(torch.bfloat16).contiguous()
    b3 = float(b3)
    qn = F.normalize(q.to(device=device, dtype=torch.float32), dim=-1)
    gn = F.normalize(g.to(device=device, dtype=torch.float32), dim=-1)
    qb, gb = qn.to(torch.bfloat16).contiguous(), gn.to(torch.bfloat16).contiguous()
    return (w1t, b1, w2t, b2, w3, b3), qn, gn, qb, gb


def _workspaces(programs: int, BP: int, D: int, H: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per-program kernel workspaces: C_t (BP, D) bf16, h_t (BP, H) bf16, v and e (BP, H) fp32."""
    v_ws = torch.empty(programs, BP, H, dtype=torch.float32, device=device)
    e_ws = torch.empty_like(v_ws)
    h_ws = torch.empty(programs, BP, H, dtype=torch.bfloat16, device=device)
    c_ws = torch.empty(programs, BP, D, dtype=torch.bfloat16, device=device)
    return c_ws, h_ws, v_ws, e_ws


def _launch(grid, weights, qc, gb, cos, res, workspaces, sizes, blocks, interpret: bool) -> None:
    """Run the kernel on one query chunk: ``res`` (n_pairs,) <- its similarities."""
    w1t, b1, w2t, b2, w3, b3 = weights
    c_ws, h_ws, v_ws, e_ws = workspaces
    n_pairs, G, n_blocks, Mq, Mg, D, H = sizes
    BP, BK, BH, warps = blocks
    KERNEL[grid](
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

    Each persistent program (about 2 per SM) keeps its block's state in its own
    workspace slice (v, e fp32 and C_t, h_t bf16: ~768 KiB at D = H = 1024,
    BP = 64), which lives in L1/L2 when it fits. Accuracy contract (tested on
    the CPU under the interpreter): every similarity within 1e-2 of the fp32
    reference relative to max |S_ref|, and mAP within 0.1 points.

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
        raise RuntimeError(f"{who}: triton is not importable ({TRITON_ERROR})")
    interpret = language_interpreted()
    blocks = _check_args(model, q, g, blocks, max_programs, max_chunk_pairs, interpret)
    BP = blocks[0]
    p0 = next(iter(model.parameters()))
    device = torch.device("cpu") if interpret else p0.device
    if not interpret and device.type != "cuda":
        raise RuntimeError(
            f"{who}: the model must be on CUDA (or triton imported with "
            f"TRITON_INTERPRET=1 to use the CPU interpreter), got {device}"
        )
    weights, qn, gn, qb, gb = _operands(model, q, g, device)
    Q, Mq, D = q.shape
    G, Mg, _ = g.shape
    H, T = int(model.hidden), Mq * Mg
    g_flat = gn.reshape(G * Mg, D).t()
    lim = 2**31 - 1  # the kernel's offsets are int32
    if G * Mg * D > lim or G * T > lim or H * max(D, H) > lim:
        raise ValueError(f"{who}: gallery bank too large for int32 offsets (G*Mg*D = {G * Mg * D}); split the gallery")
    rows = max(1, min(Q, int(max_chunk_pairs) // max(1, G), lim // (Mq * D), lim // max(1, G * T)))
    out = torch.empty(Q, G, dtype=p0.dtype, device=q.device)
    ws_programs = _num_programs(device, math.ceil(rows * G / BP), interpret, max_programs)
    workspaces = _workspaces(ws_programs, BP, D, H, device)
    for s in tqdm(range(0, Q, rows), disable=not progress, leave=False, desc="fused scoring"):
        qc = qb[s : s + rows]
        Qc = qc.shape[0]
        n_pairs = Qc * G
        cos = (qn[s : s + rows].reshape(Qc * Mq, D) @ g_flat).view(Qc, Mq, G, Mg)
        cos = cos.permute(0, 2, 1, 3).reshape(n_pairs, T).contiguous()
        res = torch.empty(n_pairs, dtype=torch.float32, device=device)
        n_blocks = math.ceil(n_pairs / BP)
        sizes = (n_pairs, G, n_blocks, Mq, Mg, D, H)
        grid = (min(ws_programs, n_blocks),)
        _launch(grid, weights, qc, gb, cos, res, workspaces, sizes, blocks, interpret)
        out[s : s + Qc] = res.view(Qc, G).to(device=q.device, dtype=out.dtype)
    return out
