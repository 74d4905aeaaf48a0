"""The Triton kernel of the learned aggregator's fused eval-mode scoring (Sec. 3.1, Eqs. 1-4).

Device code only; the host side (folded weights, cosines, chunks, launch) is
``reid_utils.models.fused_scoring``. One persistent program owns a block of BP
(query, gallery) pairs, consecutive in the row-major pair order p = qi*G + gi,
and walks the T = Mq*Mg steps of all its pairs in lock step, so the weights
streamed per step are reused BP times. Each step makes four passes over the
block, ordered by ``tl.debug_barrier``: (0) C_t = f_q,i * f_g,j (bf16),
(1) u_t = C_t W1', e_t = u_t - v_{t-1}, h_t = relu(b1' - e_t), (2) the second
layer and alpha_t, (3) v_t = v_{t-1} + alpha_t / A_t e_t. Within a step the H
outputs are tiled by BH and the reductions by BK (masks handle D, H and the
pair count not multiples of the blocks). The ``@triton.jit`` helpers are
inlined by Triton. The module imports without triton (then nothing here runs).
"""

from __future__ import annotations

try:  # optional dependency: the package imports (and the reference path works) without it
    import triton
    import triton.language as tl

    TRITON_ERROR: Exception | None = None
except Exception as exc:  # pragma: no cover - exercised only without triton
    triton = tl = None
    TRITON_ERROR = exc

__all__ = ["KERNEL", "TRITON_ERROR", "language_interpreted", "triton_available"]

# triton.jit reads TRITON_INTERPRET when it runs, i.e. when this module is imported.
_jit = triton.jit if triton is not None else (lambda fn: fn)


def triton_available() -> bool:
    """True when ``triton`` imported."""
    return triton is not None


def language_interpreted() -> bool:
    """True when this process imported triton with ``TRITON_INTERPRET=1`` (CPU interpreter).

    Triton decides at import time: its language builtins are then interpreter
    functions, so the mode cannot be switched later in the same process.
    """
    return triton is not None and type(tl.zeros).__name__ == "InterpretedFunction"


@_jit
def _dot(a, w, acc, EMULATE_BF16: tl.constexpr):
    """``acc + a @ w``: bf16 operands, fp32 accumulation.

    Triton's interpreter stores bfloat16 as raw uint16 and its ``tl.dot``
    multiplies the bit patterns (triton-lang/triton#11584), so with
    ``EMULATE_BF16`` the bf16 operands are upcast to fp32 for an IEEE fp32 dot:
    products of two bf16 values are exact in fp32, so this computes the GPU's
    numbers up to the summation order.
    """
    if EMULATE_BF16:
        acc = tl.dot(a.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(a, w, acc)
    return acc


@_jit
def _tile_matmul(
    a_ptr,
    a_rows,
    pmask,
    w_ptr,
    cols,
    cmask,
    kk,
    K,
    H,
    BP: tl.constexpr,
    BK: tl.constexpr,
    BH: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
):
    """(BP, BH) fp32 tile of A @ W: A (BP, K) bf16 workspace rows ``a_rows``, W (K, H) bf16 columns ``cols``."""
    acc = tl.zeros((BP, BH), dtype=tl.float32)
    for k0 in range(0, K, BK):
        ks = k0 + kk
        kmask = ks < K
        a = tl.load(a_ptr + a_rows + ks[None, :], mask=pmask[:, None] & kmask[None, :], other=0.0)
        w = tl.load(w_ptr + ks[:, None] * H + cols[None, :], mask=kmask[:, None] & cmask[None, :], other=0.0)
        acc = _dot(a, w, acc, EMULATE_BF16)
    return acc


@_jit
def _pair_products(q_ptr, g_ptr, c_ptr, wsd, qrow, grow, pmask, kk, D, BK: tl.constexpr):
    """Pass 0: C_t = f_q,i * f_g,j for the block, stored once per step (bf16)."""
    for k0 in range(0, D, BK):
        ks = k0 + kk
        m2 = pmask[:, None] & (ks < D)[None, :]
        fq = tl.load(q_ptr + qrow[:, None] + ks[None, :], mask=m2, other=0.0).to(tl.float32)
        fg = tl.load(g_ptr + grow[:, None] + ks[None, :], mask=m2, other=0.0).to(tl.float32)
        tl.store(c_ptr + wsd + ks[None, :], (fq * fg).to(tl.bfloat16), mask=m2)


@_jit
def _first_layer(
    c_ptr,
    w1_ptr,
    b1_ptr,
    h_ptr,
    v_ptr,
    e_ptr,
    wsd,
    wsh,
    pmask,
    t,
    kk,
    hh,
    D,
    H,
    BP: tl.constexpr,
    BK: tl.constexpr,
    BH: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
):
    """Pass 1: u_t = C_t W1' (bf16 x bf16 -> fp32); e_t = u_t - v_{t-1}; h_t = relu(b1 - e_t) (bf16)."""
    for n0 in range(0, H, BH):
        cols = n0 + hh
        cmask = cols < H
        acc = _tile_matmul(c_ptr, wsd, pmask, w1_ptr, cols, cmask, kk, D, H, BP, BK, BH, EMULATE_BF16)
        smask = pmask[:, None] & cmask[None, :]
        v = tl.load(v_ptr + wsh + cols[None, :], mask=smask & (t > 0), other=0.0)  # v_0 = 0
        e = acc - v
        b1 = tl.load(b1_ptr + cols, mask=cmask, other=0.0)
        tl.store(e_ptr + wsh + cols[None, :], e, mask=smask)
        tl.store(h_ptr + wsh + cols[None, :], tl.maximum(b1[None, :] - e, 0.0).to(tl.bfloat16), mask=smask)


@_jit
def _importance(
    h_ptr,
    w2_ptr,
    b2_ptr,
    w3_ptr,
    b3,
    wsh,
    pmask,
    kk,
    hh,
    H,
    BP: tl.constexpr,
    BK: tl.constexpr,
    BH: tl.constexpr,
    EMULATE_BF16: tl.constexpr,
):
    """Pass 2: alpha_t = softplus(relu(h_t W2' + b2) . w3 + b3), (BP,) fp32."""
    logit = tl.zeros((BP,), dtype=tl.float32)
    for n0 in range(0, H, BH):
        cols = n0 + hh
        cmask = cols < H
        acc = _tile_matmul(h_ptr, wsh, pmask, w2_ptr, cols, cmask, kk, H, H, BP, BK, BH, EMULATE_BF16)
        b2 = tl.load(b2_ptr + cols, mask=cmask, other=0.0)
        w3 = tl.load(w3_ptr + cols, mask=cmask, other=0.0)
        z = tl.maximum(acc + b2[None, :], 0.0)
        logit += tl.sum(z * w3[None, :], axis=1)
    x = logit + b3
    # softplus, stable: max(x, 0) + log(1 + exp(-|x|)); exp(x) where that underflows
    sp = tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))
    return tl.where(x < -15.0, tl.exp(x), sp)


@_jit
def _running_mean_step(v_ptr, e_ptr, wsh, pmask, wt, t, hh, H, BH: tl.constexpr):
    """Pass 3: v_t = v_{t-1} + wt * e_t with wt = alpha_t / A_t (Eq. 2 on W1' r)."""
    for n0 in range(0, H, BH):
        cols = n0 + hh
        smask = pmask[:, None] & (cols < H)[None, :]
        v = tl.load(v_ptr + wsh + cols[None, :], mask=smask & (t > 0), other=0.0)
        e = tl.load(e_ptr + wsh + cols[None, :], mask=smask, other=0.0)
        tl.store(v_ptr + wsh + cols[None, :], v + wt[:, None] * e, mask=smask)


@_jit
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
    out (n_pairs,) fp32; workspaces per program, rewritten every step: c (BP, D)
    bf16, h (BP, H) bf16, v and e (BP, H) fp32. The per-pair bookkeeping (A_t,
    sum alpha cos) stays in registers for the whole walk.
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
            _pair_products(q_ptr, g_ptr, c_ptr, wsd, qrow, grow, pmask, kk, D, BK)
            tl.debug_barrier()
            _first_layer(
                c_ptr, w1_ptr, b1_ptr, h_ptr, v_ptr, e_ptr, wsd, wsh, pmask, t, kk, hh, D, H, BP, BK, BH, EMULATE_BF16
            )
            tl.debug_barrier()
            alpha = _importance(h_ptr, w2_ptr, b2_ptr, w3_ptr, b3, wsh, pmask, kk, hh, H, BP, BK, BH, EMULATE_BF16)
            A += alpha
            cos = tl.load(cos_ptr + p * T + t, mask=pmask, other=0.0)
            num += alpha * cos
            wt = alpha / tl.maximum(A, 1.1754943508222875e-38)
            _running_mean_step(v_ptr, e_ptr, wsh, pmask, wt, t, hh, H, BH)
            tl.debug_barrier()
        tl.store(out_ptr + p, num / tl.maximum(A, 1.1754943508222875e-38), mask=pmask)


#: The jitted kernel (``None`` without triton); launched by ``fused_scoring.fused_similarity_matrix``.
KERNEL = _scoring_kernel if triton is not None else None
