"""Ranks of the true matches among the kept gallery items: the engine of
:func:`reid_utils.eval.ranking.evaluate_rank` (paper Sec. 4.1 metrics), plus its input checks.

CMC and AP only need the rank of every true match among the kept gallery items,
rank = 1 + #(items before it) - #(junk before it). Per chunk of queries, each row's
distances are cast to float32 and sorted (values only: numpy's SIMD sort, about 2-3x
cheaper than an argsort, and no index arrays); every true match is binary-searched in
its row; the few items whose float32 value collides with a match's are compared
exactly (distance, then gallery index), so the result is exact for float64 input too
and ties are broken by gallery index (a stable sort, MATLAB's order). Junk before a
match is counted directly (same pid, same camera: a handful per query) or with the
same sorted search (pid -1 junk of ``mars_official``). No Python loop runs over
gallery items; ``benchmarks/bench_evaluation.py`` compares it with per-query loops.
"""

from __future__ import annotations

import numpy as np
import torch


# ----------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------
def check_positive_int(value, name: str) -> int:
    """``value`` as an int >= 1 (bool and non-integers refused); ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def as_numpy(x, name: str) -> np.ndarray:
    """``x`` (numpy array or torch tensor) as a numpy array; ValueError naming ``name`` otherwise.

    bfloat16 tensors (no numpy dtype) become float32, which holds them exactly.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise ValueError(f"{name}: expected a numeric array, got dtype object")
    return arr


# float64 holds every integer up to 2^53 exactly, and no longer every one beyond
FLOAT64_EXACT_INT = 2**53


def _fits_float64(d: np.ndarray) -> bool:
    return d.dtype.kind not in "iu" or not d.size or max(abs(int(d.min())), abs(int(d.max()))) <= FLOAT64_EXACT_INT


def exact_float_distances(d: np.ndarray) -> np.ndarray:
    """Integer distances as float64 without changing their order or ties.

    Within +-2^53 (the usual case) the plain float64 cast; beyond, where float64
    would merge distinct integers into ties, their dense ranks over the whole matrix
    (0 for the smallest distinct value, ...): same order, same ties, so the same
    CMC, mAP and ranked lists. Float input is returned unchanged.
    """
    if d.dtype.kind not in "iu":
        return d
    if _fits_float64(d):
        return d.astype(np.float64)
    return np.unique(d.ravel(), return_inverse=True)[1].reshape(d.shape).astype(np.float64)


def check_distmat(distmat, name: str = "distmat", keep_integers: bool = False) -> np.ndarray:
    """A non-empty (Q, G) matrix of finite real distances.

    bool, complex and non-numeric dtypes are refused. Integer distances go through
    :func:`exact_float_distances` (ranked exactly at any magnitude), or are
    returned unchanged with ``keep_integers`` (to combine matrices first).
    """
    d = as_numpy(distmat, name)
    if d.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (num_query, num_gallery) matrix, got shape {d.shape}")
    if d.shape[0] == 0:
        raise ValueError(f"{name}: there are no queries (shape {d.shape})")
    if d.shape[1] == 0:
        raise ValueError(f"{name}: the gallery is empty (shape {d.shape})")
    if d.dtype == bool or not np.issubdtype(d.dtype, np.number) or np.issubdtype(d.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real distances, got dtype {d.dtype}")
    if d.dtype.kind in "iu":
        return d if keep_integers else exact_float_distances(d)
    if not np.isfinite(d).all():
        if np.isnan(d).any():
            raise ValueError(f"{name}: contains NaN distances")
        raise ValueError(f"{name}: contains infinite distances (use a large finite value to push items down)")
    return d


def concat_distances(a: np.ndarray, b: np.ndarray, names: tuple = ("q_g_dist", "q_q_dist")) -> np.ndarray:
    """``[a, b]`` along columns (both from :func:`check_distmat` with ``keep_integers``), exactly.

    Two float matrices: their common float dtype. Two integer matrices: float64 when
    within +-2^53 (as :func:`exact_float_distances`), else a common integer dtype, for
    :func:`evaluate_rank` to rank exactly. Integers beyond +-2^53 next to floats are
    refused: no dtype compares the two exactly.
    """
    big = [not _fits_float64(x) for x in (a, b)]
    ints = [x.dtype.kind in "iu" for x in (a, b)]
    if any(big) and not all(ints):
        name = names[big.index(True)]
        raise ValueError(
            f"{name}: integer distances beyond +-2^53 cannot be compared exactly with the float "
            f"distances of {names[big.index(True) - 1]}; pass both as integers or both as floats"
        )
    if any(big):
        common = np.result_type(a.dtype, b.dtype)
        if common.kind == "f":  # int64 with uint64: the integer type that holds both
            lo, hi = min(int(a.min()), int(b.min())), max(int(a.max()), int(b.max()))
            if lo < 0 and hi > np.iinfo(np.int64).max:
                raise ValueError(f"{names[1]}: no 64-bit integer type holds both matrices' values ({lo} .. {hi})")
            common = np.dtype(np.int64 if lo < 0 else np.uint64)
    else:
        a, b = exact_float_distances(a), exact_float_distances(b)
        common = np.result_type(a.dtype, b.dtype)
    return np.concatenate([a.astype(common, copy=False), b.astype(common, copy=False)], axis=1)


def check_labels(x, name: str, length: int, what: str) -> np.ndarray:
    """(length,) integer labels (pids or camids) as int64; ``what`` names the length in errors."""
    t = as_numpy(x, name)
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {t.shape}")
    if t.shape[0] != length:
        raise ValueError(f"{name}: expected length {length} (the number of {what}), got {t.shape[0]}")
    if t.dtype == bool or not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected integer labels, got dtype {t.dtype}")
    if np.issubdtype(t.dtype, np.floating) and not np.array_equal(t, np.round(t)):
        raise ValueError(f"{name}: expected integer labels")
    return t.astype(np.int64)


# ----------------------------------------------------------------------------
# ranking helper shared with re-ranking
# ----------------------------------------------------------------------------
def stable_topk_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` smallest entries of each row, in stable sorted order.

    The result equals ``torch.sort(values, dim=1, stable=True).indices[:, :k]``
    (ties broken by lower column index), computed with ``torch.topk``, which is
    much cheaper than a full sort when ``k`` is small.

    Args:
        values: (R, N) real tensor without NaN.
        k: number of indices per row, ``1 <= k <= N``.

    Returns:
        (R, k) int64 tensor.
    """
    n = values.shape[1]
    if k >= n:
        return torch.sort(values, dim=1, stable=True).indices
    # one extra value tells whether ties straddle the k-th position
    vals, idx = torch.topk(values, k + 1, dim=1, largest=False, sorted=True)
    bad = torch.nonzero(vals[:, k] == vals[:, k - 1]).flatten()
    idx = idx[:, :k]
    # order the selection by (value, index): sort indices, then stable-sort values
    idx, _ = torch.sort(idx, dim=1)
    order = torch.sort(torch.gather(values, 1, idx), dim=1, stable=True).indices
    idx = torch.gather(idx, 1, order)
    # rows with ties at the k-th value: topk may have picked any of the tied
    # columns; redo those rows with a stable full sort (rare for real data)
    if bad.numel():
        idx[bad] = torch.sort(values[bad], dim=1, stable=True).indices[:, :k]
    return idx


# ----------------------------------------------------------------------------
# core
# ----------------------------------------------------------------------------
class PidIndex:
    """Gallery indices grouped by identity, to find a query's same-pid items."""

    def __init__(self, g_pids: np.ndarray):
        self.order = np.argsort(g_pids, kind="stable")  # ascending gallery index within a pid
        self.uniq, self.start, self.count = np.unique(g_pids[self.order], return_index=True, return_counts=True)

    def lookup(self, q_pids: np.ndarray):
        """(C, S) gallery indices with the query's pid (ascending, -1 padded) and a validity mask."""
        pos = np.minimum(np.searchsorted(self.uniq, q_pids), len(self.uniq) - 1)
        cnt = np.where(self.uniq[pos] == q_pids, self.count[pos], 0)
        S = int(cnt.max()) if cnt.size else 0
        ar = np.arange(S)
        valid = ar[None, :] < cnt[:, None]
        idx = np.minimum(self.start[pos][:, None] + ar[None, :], len(self.order) - 1)
        return np.where(valid, self.order[idx], -1), valid


def _count_before(d, sorted32, gd, gi, gvalid, cols, self_in_set: bool, batch: int = 256):
    """``count[c, k] = #{j in cols : (d[c, j], j) < (gd[c, k], gi[c, k])}``.

    ``sorted32`` holds each row's ``d[c, cols]`` cast to float32 and sorted.
    Float32 rounding is monotone, so a value strictly below (above) the good's
    rounded distance is strictly below (above) it exactly; only the items
    whose rounded distance equals it (exact ties and rounding collisions,
    rare) are compared exactly, distance first, then gallery index.

    Args:
        d: (C, G) exact distances. sorted32: (C, n) float32, sorted rows.
        gd, gi, gvalid: (C, P) distances, gallery indices and mask of the
            goods; the valid goods of a row come first.
        cols: (n,) gallery columns of ``sorted32``, or None for all columns.
        self_in_set: the goods themselves are among ``cols`` (one equal
            value per good is then the good itself).
    """
    g32 = gd.astype(np.float32)
    C, P = gd.shape
    n = sorted32.shape[1]
    npos = gvalid.sum(axis=1)
    count = np.zeros((C, P), dtype=np.int64)
    for r in np.flatnonzero(npos):  # a binary search per good; cheap next to the sort
        count[r, : npos[r]] = np.searchsorted(sorted32[r], g32[r, : npos[r]], side="left")
    # more than one (or, for foreign sets, any) equal float32 value -> compare exactly
    nxt = count + (1 if self_in_set else 0)
    eq_next = np.take_along_axis(sorted32, np.minimum(nxt, n - 1), 1) == g32
    tr, tk = np.nonzero(gvalid & (nxt < n) & eq_next)
    colidx = np.arange(d.shape[1]) if cols is None else cols
    for b in range(0, tr.size, batch):
        r, k = tr[b : b + batch], tk[b : b + batch]
        sub = d[r] if cols is None else d[r][:, cols]  # (T, n) exact distances
        gdv, giv = gd[r, k][:, None], gi[r, k][:, None]
        before = (sub < gdv) | ((sub == gdv) & (colidx[None, :] < giv))
        count[r, k] += (before & (sub.astype(np.float32) == g32[r, k][:, None])).sum(axis=1)
    return count


def _junk_before(cd, cand, is_junk, gd, gi, max_elems: int = 4_000_000):
    """``count[c, k] = #{s : is_junk[c, s] and (cd[c, s], cand[c, s]) < (gd[c, k], gi[c, k])}``.

    A direct (rows, P, J) comparison over each row's few same-pid junk items,
    ``J`` = the most junk items of a row, in row blocks of bounded size.
    """
    C, P = gd.shape
    nj = is_junk.sum(axis=1)
    J = int(nj.max()) if C else 0
    count = np.zeros((C, P), dtype=np.int64)
    if J == 0:
        return count
    order = np.argsort(~is_junk, axis=1, kind="stable")[:, :J]  # junk first
    jd = np.take_along_axis(cd, order, 1)
    ji = np.take_along_axis(cand, order, 1)
    jvalid = np.take_along_axis(is_junk, order, 1)
    step = max(1, max_elems // (P * J))
    for a in range(0, C, step):
        sl = slice(a, a + step)
        x, xi, g, gidx = jd[sl, None, :], ji[sl, None, :], gd[sl, :, None], gi[sl, :, None]
        lt = (x < g) | ((x == g) & (xi < gidx))
        count[sl] = (lt & jvalid[sl, None, :]).sum(axis=2)
    return count


def rank_chunk(d, qp, qc, gp, gc, pid_index, junk_cols, official: bool, max_rank: int, details: bool):
    """Ranks of all true matches for one chunk of queries.

    Args:
        d: (C, G) distances. qp, qc: (C,) query pids/camids. gp, gc: (G,).
        pid_index: :class:`PidIndex` of ``gp``. junk_cols: gallery columns
            that are junk for every query (pid -1 in ``mars_official``).

    Returns:
        dict with per-query ``ap`` (C,), ``first`` (C,), ``nmatch`` (C,),
        and, when ``details``, ``ranked`` (C, R) and ``ranked_good`` (C, R).
    """
    C, G = d.shape
    rows = np.arange(C)[:, None]
    cand, cvalid = pid_index.lookup(qp)  # same-pid gallery items, (C, S)
    if official:
        cvalid &= (qp != -1)[:, None]  # pid -1 items are junk for everyone (junk_cols)
    cand0 = np.maximum(cand, 0)
    same_cam = gc[cand0] == qc[:, None]
    is_good = cvalid & ~same_cam
    is_junk = cvalid & same_cam
    cd = d[rows, cand0]  # (C, S)
    nmatch = is_good.sum(axis=1)
    P = int(nmatch.max()) if C else 0
    ap = np.zeros(C)
    first = np.zeros(C, dtype=np.int64)
    if P > 0:
        # goods ordered by (distance, gallery index); non-goods pushed to the end
        order = np.argsort(np.where(is_good, cd, np.inf), axis=1, kind="stable")[:, :P]
        gd = np.take_along_axis(cd, order, 1)
        gi = np.take_along_axis(cand, order, 1)
        gvalid = np.take_along_axis(is_good, order, 1)
        gd = np.where(gvalid, gd, 0)  # finite padding, masked out below
        # all items before each good ...
        sorted32 = np.sort(d.astype(np.float32, copy=False), axis=1)
        before = _count_before(d, sorted32, gd, gi, gvalid, None, True)
        # ... minus same-pid same-camera junk before it ...
        before -= _junk_before(cd, cand, is_junk, gd, gi)
        # ... minus pid -1 junk before it (mars_official)
        if junk_cols is not None and junk_cols.size:
            sj = np.sort(d[:, junk_cols].astype(np.float32), axis=1)
            before -= _count_before(d, sj, gd, gi, gvalid, junk_cols, False)
        ranks = np.where(gvalid, before + 1.0, 1.0)  # (C, P) 1-based rank of the k-th good among kept
        k = np.arange(1, P + 1, dtype=np.float64)[None, :]
        if official:
            prev = np.where(ranks > 1, (k - 1) / np.maximum(ranks - 1, 1), 1.0)
            terms = (prev + k / ranks) / 2
        else:
            terms = k / ranks
        ap = np.where(gvalid, terms, 0).sum(axis=1) / np.maximum(nmatch, 1)
        first = np.where(nmatch > 0, ranks[:, 0], 0).astype(np.int64)
    out = {"ap": ap, "first": first, "nmatch": nmatch}
    if details:
        out["ranked"], out["ranked_good"] = _top_kept(d, cand, is_junk, junk_cols, qp, gp, min(max_rank, G))
    return out


def _top_kept(d, cand, is_junk, junk_cols, qp, gp, k: int):
    """``(ranked, ranked_good)``: the top ``k`` kept gallery items of each row (-1 where
    fewer remain) and whether each is a true match; junk is masked with inf."""
    masked = np.array(d, dtype=np.float64 if d.dtype == np.float64 else np.float32)
    jr, js = np.nonzero(is_junk)
    masked[jr, cand[jr, js]] = np.inf
    if junk_cols is not None and junk_cols.size:
        masked[:, junk_cols] = np.inf
    idx = stable_topk_smallest(torch.from_numpy(masked), k).numpy()
    kept = np.isfinite(np.take_along_axis(masked, idx, 1))
    return np.where(kept, idx, -1), kept & (gp[idx] == qp[:, None])
