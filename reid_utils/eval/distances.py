"""Pairwise distances between feature sets, batched and chunked.

Paper Sec. 4.2-4.3: gallery sequences are ranked by the distance between
their I3D features (one clip, or the average of several clips, optionally
L2-normalised); the learned aggregation of Sec. 3 produces similarities
instead, which :func:`similarity_to_distance` turns into distances for
:mod:`reid_utils.eval.ranking` and :mod:`reid_utils.eval.reranking`.

Conventions: numpy in -> numpy out, torch in -> torch out (same device).
Inputs are (N, D) and (M, D), or batched (B, N, D) and (B, M, D); outputs are
(N, M) or (B, N, M). Rows of ``x`` are processed ``chunk_size`` at a time so
the temporaries stay small; the output itself is allocated once.
"""

from __future__ import annotations

import numpy as np
import torch

from reid_utils.eval.match_ranks import check_positive_int

METRICS = ("euclidean", "sqeuclidean", "cosine")


def _to_torch(x, name: str):
    if isinstance(x, torch.Tensor):
        t, is_np = x.detach(), False
    else:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError(f"{name}: expected a numeric array, got dtype object")
        t, is_np = torch.from_numpy(np.ascontiguousarray(arr)), True
    if t.is_complex():
        raise ValueError(f"{name}: expected real features, got dtype {t.dtype} (complex)")
    if t.ndim not in (2, 3):
        raise ValueError(f"{name}: expected shape (N, D) or (B, N, D), got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t, is_np


def _pair(x, y, chunk_size):
    """The one input check of the helpers: ``(x, y, is_np, same)`` as torch tensors of one
    dtype and device; ``chunk_size`` must be a positive integer."""
    check_positive_int(chunk_size, "chunk_size")
    tx, is_np = _to_torch(x, "x")
    if y is None:
        return tx, tx, is_np, True
    ty, _ = _to_torch(y, "y")
    if tx.ndim != ty.ndim:
        raise ValueError(f"y: expected {tx.ndim} dimensions like x, got shape {tuple(ty.shape)}")
    if tx.shape[-1] != ty.shape[-1]:
        raise ValueError(f"y: feature dimension {ty.shape[-1]} differs from x's {tx.shape[-1]}")
    if tx.ndim == 3 and tx.shape[0] != ty.shape[0]:
        raise ValueError(f"y: batch size {ty.shape[0]} differs from x's {tx.shape[0]}")
    dtype = torch.promote_types(tx.dtype, ty.dtype)
    return tx.to(dtype), ty.to(dtype, copy=False).to(tx.device), is_np, False


def _out(t: torch.Tensor, is_np: bool):
    return t.cpu().numpy() if is_np else t


def euclidean_distance(x, y=None, squared: bool = False, chunk_size: int = 4096):
    """Euclidean distances ``||x_i - y_j||`` (or their squares).

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` in the inputs' dtype, clamped at 0
    (float32 rounding can make it slightly negative); with ``y=None`` the
    distances of ``x`` to itself, with an exactly zero diagonal.

    Args:
        x: (N, D) or (B, N, D) features.
        y: (M, D) or (B, M, D) features, or None for ``y = x``.
        squared: return squared distances (no square root) if True; the
            plain Euclidean distance otherwise (default).
        chunk_size: rows of ``x`` per step, a positive integer.

    Returns:
        (N, M) or (B, N, M) distances, numpy if ``x`` is numpy.
    """
    tx, ty, is_np, same = _pair(x, y, chunk_size)
    y2 = (ty * ty).sum(-1).unsqueeze(-2)  # (.., 1, M)
    out = torch.empty(tx.shape[:-1] + ty.shape[-2:-1], dtype=tx.dtype, device=tx.device)
    n = tx.shape[-2]
    for a in range(0, n, chunk_size):
        xa = tx[..., a : a + chunk_size, :]
        d = (xa * xa).sum(-1, keepdim=True) + y2 - 2.0 * (xa @ ty.transpose(-1, -2))
        d.clamp_(min=0)
        if same:
            idx = torch.arange(a, a + xa.shape[-2], device=tx.device)
            d[..., idx - a, idx] = 0
        if not squared:
            d.sqrt_()
        out[..., a : a + xa.shape[-2], :] = d
    return _out(out, is_np)


def cosine_similarity(x, y=None, eps: float = 1e-12, chunk_size: int = 4096):
    """Cosine similarity ``x_i.y_j / (|x_i| |y_j|)`` (norms clamped at ``eps``).

    Args:
        x, y, chunk_size: as for :func:`euclidean_distance`.

    Returns:
        (N, M) or (B, N, M) similarities in [-1, 1].
    """
    tx, ty, is_np, _ = _pair(x, y, chunk_size)
    tx = tx / tx.norm(dim=-1, keepdim=True).clamp(min=eps)
    ty = tx if y is None else ty / ty.norm(dim=-1, keepdim=True).clamp(min=eps)
    out = torch.empty(tx.shape[:-1] + ty.shape[-2:-1], dtype=tx.dtype, device=tx.device)
    for a in range(0, tx.shape[-2], chunk_size):
        out[..., a : a + chunk_size, :] = (tx[..., a : a + chunk_size, :] @ ty.transpose(-1, -2)).clamp_(-1, 1)
    return _out(out, is_np)


def cosine_distance(x, y=None, eps: float = 1e-12, chunk_size: int = 4096):
    """Cosine distance ``1 - cos(x_i, y_j)``, in [0, 2].

    For L2-normalised features it equals half the squared Euclidean distance.
    """
    s = cosine_similarity(x, y, eps=eps, chunk_size=chunk_size)
    return 1.0 - s


def pairwise_distance(x, y=None, metric: str = "euclidean", chunk_size: int = 4096):
    """Distances with a named metric: ``euclidean``, ``sqeuclidean`` or ``cosine``."""
    if metric == "euclidean":
        return euclidean_distance(x, y, squared=False, chunk_size=chunk_size)
    if metric == "sqeuclidean":
        return euclidean_distance(x, y, squared=True, chunk_size=chunk_size)
    if metric == "cosine":
        return cosine_distance(x, y, chunk_size=chunk_size)
    raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")


def reranking_inputs(query, gallery, metric: str = "euclidean", chunk_size: int = 4096):
    """The three matrices :func:`reid_utils.eval.reranking.re_ranking` needs.

    Args:
        query: (Q, D) features. gallery: (G, D) features.
        metric: as for :func:`pairwise_distance`.

    Returns:
        ``(q_g (Q, G), q_q (Q, Q), g_g (G, G))``.
    """
    return (
        pairwise_distance(query, gallery, metric, chunk_size),
        pairwise_distance(query, None, metric, chunk_size),
        pairwise_distance(gallery, None, metric, chunk_size),
    )


def similarity_to_distance(sim) -> np.ndarray:
    """The one similarity -> distance rule: ``d = c - s`` with ``c = max(1, max s)``.

    ``1 - s`` for cosines; non-negative (k-reciprocal re-ranking needs that) and
    ordered exactly as ``-s`` (no clipping, so no new ties), so rankings, CMC and
    mAP are those of decreasing similarity.

    Args:
        sim: (Q, G) similarities, numpy array or torch tensor.

    Returns:
        (Q, G) float64 numpy distances.
    """
    if isinstance(sim, torch.Tensor):
        sim = sim.detach().cpu().double().numpy()
    s = np.asarray(sim, dtype=np.float64)
    return max(1.0, float(s.max())) - s
