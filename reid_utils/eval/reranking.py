"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), chunked and sparse.

Paper Sec. 4.5 / Tables 3-5: the comparison with the state of the art lists methods
"with re-ranking"; the defaults are the reference's k1=20, k2=6, lambda=0.3.
:func:`re_ranking` returns the same numbers as the widely used reference
implementation (the authors' ``re_ranking``, copied into torchreid), step by step:

1. ``D`` = the (N, N) matrix ``[[q_q, q_g], [q_g^T, g_g]]``, N = Q + G; squared
   (float32); every column divided by its maximum; transposed: row ``d_i`` lies in [0, 1].
   Only ``D**2 / max`` matters, so distances too large or small to square in float32
   are first scaled by a power of two (exact; :func:`_normaliser`).
2. ``N(i, k)`` = the k nearest items of row ``i`` (``i`` included); k-reciprocal set
   ``R(i) = {j in N(i, k1+1) : i in N(j, k1+1)}``.
3. Expansion: for each ``c in R(i)``, ``Rh(c)`` is its reciprocal set with
   ``round(k1/2)+1`` neighbours (numpy rounding); if ``|Rh(c) & R(i)| > 2/3 |Rh(c)|``,
   ``Rh(c)`` is added. ``E(i)`` = the union.
4. ``V[i, j] = exp(-d_i[j]) / sum_{j' in E(i)} exp(-d_i[j'])`` on ``E(i)``.
5. Local query expansion (if ``k2 != 1``): ``V[i] <- mean of V[j]`` over ``j in N(i, k2)``.
6. Jaccard distance ``1 - m / (2 - m)`` with ``m = sum_l min(V[i,l], V[j,l])``.
7. ``final = jaccard * (1 - lambda) + d * lambda``, query rows, gallery columns.

Note the squaring in step 1: torchreid's "euclidean" distance (already squared)
effectively uses the 4th power, as in the reference; pass plain distances.
Peak memory above the inputs is the (Q, G) float32 output plus O(chunk x N)
temporaries (``benchmarks/bench_reranking.py``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from reid_utils.eval.match_ranks import as_numpy, check_positive_int, stable_topk_smallest


def _as_numpy(x, name: str) -> np.ndarray:
    arr = as_numpy(x, name)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected a real numeric matrix, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, got shape {arr.shape}")
    return arr


def _check_inputs(q_g_dist, q_q_dist, g_g_dist):
    qg = _as_numpy(q_g_dist, "q_g_dist")
    qq = _as_numpy(q_q_dist, "q_q_dist")
    gg = _as_numpy(g_g_dist, "g_g_dist")
    Q, G = qg.shape
    if Q == 0:
        raise ValueError(f"q_g_dist: there are no queries (shape {qg.shape})")
    if G == 0:
        raise ValueError(f"q_g_dist: the gallery is empty (shape {qg.shape})")
    if qq.shape != (Q, Q):
        raise ValueError(f"q_q_dist: expected shape {(Q, Q)} to match q_g_dist {qg.shape}, got {qq.shape}")
    if gg.shape != (G, G):
        raise ValueError(f"g_g_dist: expected shape {(G, G)} to match q_g_dist {qg.shape}, got {gg.shape}")
    dtype = np.result_type(qg.dtype, qq.dtype, gg.dtype, np.float32)
    for name, a in (("q_g_dist", qg), ("q_q_dist", qq), ("g_g_dist", gg)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: contains NaN or infinite distances")
        if a.min() < 0:
            raise ValueError(
                f"{name}: contains negative distances (min {a.min():.4g}); the method squares "
                "its inputs, so they must be non-negative distances, not similarities"
            )
    return qg, qq, gg, dtype


class _FullMatrix:
    """Read access to ``D = [[q_q, q_g], [q_g^T, g_g]]`` without forming it."""

    def __init__(self, qg, qq, gg, dtype):
        self.qg, self.qq, self.gg, self.dtype = qg, qq, gg, dtype
        self.Q, self.G = qg.shape
        self.N = self.Q + self.G

    def columns(self, a: int, b: int) -> np.ndarray:
        """``D[:, a:b].T`` as an (b-a, N) array of ``dtype``."""
        Q = self.Q
        parts = []
        if a < Q:  # query columns: [q_q[:, i]; q_g[i, :]]
            e = min(b, Q)
            parts.append(np.concatenate([self.qq[:, a:e].T, self.qg[a:e, :]], axis=1).astype(self.dtype, copy=False))
        if b > Q:  # gallery columns: [q_g[:, j]; g_g[:, j]]
            s, e = max(a, Q) - Q, b - Q
            parts.append(np.concatenate([self.qg[:, s:e].T, self.gg[:, s:e].T], axis=1).astype(self.dtype, copy=False))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``D[rows, cols]`` for index arrays."""
        Q = self.Q
        out = np.empty(rows.shape, dtype=self.dtype)
        rq, cq = rows < Q, cols < Q
        m = rq & cq
        out[m] = self.qq[rows[m], cols[m]]
        m = rq & ~cq
        out[m] = self.qg[rows[m], cols[m] - Q]
        m = ~rq & cq
        out[m] = self.qg[cols[m], rows[m] - Q]
        m = ~rq & ~cq
        out[m] = self.gg[rows[m] - Q, cols[m] - Q]
        return out

    def column_max(self) -> np.ndarray:
        """``max_k |D[k, i]|`` per column, in ``dtype``."""

        def mx(a, axis):
            return np.maximum(np.abs(a.max(axis=axis)), np.abs(a.min(axis=axis))).astype(self.dtype)

        cq = np.maximum(mx(self.qq, 0), mx(self.qg, 1))
        cg = np.maximum(mx(self.qg, 0), mx(self.gg, 0))
        return np.concatenate([cq, cg])

    def column_max_sq(self) -> np.ndarray:
        """``max_k D[k, i]**2`` per column, float32 like the reference (squared in ``dtype``)."""
        return (self.column_max() ** 2).astype(np.float32)


def _indicator(rows: np.ndarray, cols: np.ndarray, n: int) -> sp.csr_matrix:
    """Sparse 0/1 (n, n) matrix with ones at (rows, cols) (no duplicates)."""
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(n, n))
    m.sum_duplicates()
    m.data[:] = 1
    return m


def _knn_indicator(rank: np.ndarray, k: int) -> sp.csr_matrix:
    n = rank.shape[0]
    return _indicator(np.repeat(np.arange(n), k), rank[:, :k].ravel(), n)


def _reciprocal(rank: np.ndarray, k: int) -> sp.csr_matrix:
    """``R[i, j] = 1`` iff j is among the k nearest of i and i among those of j."""
    a = _knn_indicator(rank, k)
    r = a.multiply(a.T).tocsr()
    r.eliminate_zeros()
    return r


def _jaccard_min_sums(vq: sp.csr_matrix, vg_csc: sp.csc_matrix, max_triples: int) -> np.ndarray:
    """``m[i, j] = sum_l min(vq[i, l], vg[j, l])`` as a dense (Q, G) float32 array.

    Enumerates, per chunk of query rows, every (i, l, j) with both entries
    non-zero (the reference's inverted index) and accumulates with bincount.
    """
    Q, G = vq.shape[0], vg_csc.shape[0]
    col_nnz = np.diff(vg_csc.indptr)
    triples_per_row = (
        np.add.reduceat(np.r_[col_nnz[vq.indices], 0], vq.indptr[:-1]) if vq.nnz else np.zeros(Q, dtype=np.int64)
    )
    triples_per_row[np.diff(vq.indptr) == 0] = 0
    out = np.empty((Q, G), dtype=np.float32)
    max_rows = max(1, max_triples // (4 * G))  # bounds the dense float64 accumulator too
    a = 0
    while a < Q:
        # grow the chunk until it holds max_triples (at least one row)
        cum = np.cumsum(triples_per_row[a : a + max_rows])
        b = a + max(1, int(np.searchsorted(cum, max_triples, side="right")))
        s, e = vq.indptr[a], vq.indptr[b]
        row_of = np.repeat(np.arange(b - a), np.diff(vq.indptr[a : b + 1]))  # local query row per entry
        cols, v = vq.indices[s:e], vq.data[s:e]
        cnt = col_nnz[cols]
        rep = np.repeat(np.arange(cols.size), cnt)
        offs = np.cumsum(cnt) - cnt
        pos = vg_csc.indptr[cols][rep] + (np.arange(rep.size) - offs[rep])
        mins = np.minimum(v[rep], vg_csc.data[pos])
        target = row_of[rep] * G + vg_csc.indices[pos]
        out[a:b] = np.bincount(target, weights=mins, minlength=(b - a) * G).reshape(b - a, G)
        a = b
    return out


def _check_params(k1, k2, lambda_value, chunk_size, max_triples) -> None:
    for name, k in (("k1", k1), ("k2", k2), ("chunk_size", chunk_size), ("max_triples", max_triples)):
        check_positive_int(k, name)
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value: expected a value in [0, 1], got {lambda_value!r}")


_F32_TINY = float(np.finfo(np.float32).tiny)  # 2^-126, the smallest normal float32


def _range_error(cmax: np.ndarray) -> ValueError:
    i, j = int(np.argmin(cmax)), int(np.argmax(cmax))
    return ValueError(
        f"q_g_dist/q_q_dist/g_g_dist: distances span too wide a range for re-ranking's float32 "
        f"normalisation: every distance involving item {i} (queries first, then gallery) is at most "
        f"{float(cmax[i]):.3g}, but item {j} has a distance of {float(cmax[j]):.3g}; supported: the largest "
        "distances of any two items within a factor of about 2^125 (4e37) of each other"
    )


def _normaliser(qg, qq, gg, dtype):
    """Step 1 guard: ``(full, colmax)``, ``colmax`` = float32 column maxima of ``D**2``.

    The output depends on the distances only through ``D**2 / colmax``, so it is
    invariant to scaling all three inputs by one positive constant; scaling by a
    power of two is exact. When every ``colmax`` is a finite, normal float32 (the
    usual case) nothing is scaled: the reference's operations. Otherwise (distances
    >~ 1.8e19 overflow, < ~1e-19 underflow when squared in float32) the inputs are
    scaled (copied) by the power of two that centres the column maxima around 1,
    which gives exactly the result of the same distances at a usual scale.

    Raises:
        ValueError: an item whose distances are all zero, or column maxima
            too far apart for any scale (:func:`_range_error`).
    """
    full = _FullMatrix(qg, qq, gg, dtype)
    cmax = full.column_max()
    if (cmax == 0).any():
        i = int(np.flatnonzero(cmax == 0)[0])
        raise ValueError(
            f"q_g_dist/q_q_dist/g_g_dist: every distance involving item {i} "
            "(queries first, then gallery) is zero; the normalisation would divide by 0"
        )
    with np.errstate(over="ignore", under="ignore"):
        colmax = (cmax**2).astype(np.float32)
    if np.isfinite(colmax).all() and (colmax >= _F32_TINY).all():
        return full, colmax
    ex_hi, ex_lo = int(np.frexp(cmax.max())[1]), int(np.frexp(cmax.min())[1])
    e = -((ex_hi + ex_lo) // 2)
    if ex_hi + e > 63 or ex_lo + e < -62:  # (2^63)^2 < float32 max; (2^-63)^2 = 2^-126
        raise _range_error(cmax)
    full = _FullMatrix(
        *(np.ldexp(a.astype(dtype, copy=False), e).astype(dtype, copy=False) for a in (qg, qq, gg)), dtype
    )
    return full, full.column_max_sq()


def _nearest(full: _FullMatrix, colmax: np.ndarray, K: int, chunk_size: int) -> np.ndarray:
    """Step 2: (N, K) int64, the K nearest of every row of the normalised matrix.

    ``torch.topk`` per chunk of rows instead of a full ``argsort`` of the (N, N) matrix;
    ties broken by lower index (the reference's ``np.argsort`` leaves them unspecified).
    """
    N = full.N
    rank = np.empty((N, K), dtype=np.int64)
    for a in range(0, N, chunk_size):
        b = min(a + chunk_size, N)
        rows = torch.from_numpy((full.columns(a, b) ** 2).astype(np.float32, copy=False))
        rows /= torch.from_numpy(colmax[a:b]).unsqueeze(1)
        rank[a:b] = stable_topk_smallest(rows, K).numpy()
        del rows
    return rank


def _expanded_sets(rank: np.ndarray, kf: int, khf: int, N: int) -> sp.csr_matrix:
    """Step 3: the 0/1 sparse (N, N) matrix of the expanded reciprocal sets ``E(i)``."""
    R = _reciprocal(rank, kf)
    Rh = _reciprocal(rank, khf)
    rh_size = np.diff(Rh.indptr).astype(np.float64)
    overlap = (R @ Rh.T).tocsr()  # overlap[i, c] = |R(i) & Rh(c)|
    ri, rc = R.nonzero()
    ov = np.asarray(overlap[ri, rc]).ravel()
    keep = ov > 2.0 / 3 * rh_size[rc]
    M = _indicator(ri[keep], rc[keep], N)
    E = R + M @ Rh
    E = E.tocsr()
    E.sum_duplicates()
    E.sort_indices()
    return E


def _weights(full: _FullMatrix, colmax: np.ndarray, E: sp.csr_matrix) -> sp.csr_matrix:
    """Step 4: sparse float32 ``V``, Gaussian weights on ``E(i)`` normalised per row."""
    N = full.N
    ei, ej = E.nonzero()  # row-major order
    d_e = (full.entries(ej, ei) ** 2).astype(np.float32) / colmax[ei]
    w = np.exp(-d_e)
    row_sum = np.bincount(ei, weights=w, minlength=N).astype(np.float32)
    return sp.csr_matrix(((w / row_sum[ei]).astype(np.float32), (ei, ej)), shape=(N, N))


def _min_sums(V: sp.csr_matrix, Q: int, max_triples: int) -> np.ndarray:
    """Step 6a: ``m[i, j] = sum_l min(V[i, l], V[Q + j, l])``, (Q, G) float32.

    ``V`` and the neighbour sets stay scipy sparse; the (query, item, gallery) triples
    sharing a non-zero column are enumerated per chunk of queries and ``min`` summed
    with ``bincount`` (float64 accumulation, then float32 like the reference).
    """
    vq = V[:Q].tocsr()
    vq.sort_indices()
    vg = V[Q:].tocsc()
    vg.sort_indices()
    return _jaccard_min_sums(vq, vg, max_triples)


def _jaccard_in_place(m: np.ndarray) -> np.ndarray:
    """Step 6b: Jaccard distance ``1 - m / (2 - m)``, in place, float32 like the reference."""
    tmp = np.subtract(np.float32(2.0), m)
    np.divide(m, tmp, out=m)
    np.subtract(np.float32(1.0), m, out=m)
    return m


def _blend(jaccard: np.ndarray, qg: np.ndarray, dtype, colmax: np.ndarray, lam: float, chunk_size: int) -> np.ndarray:
    """Step 7, in place: ``jaccard * (1 - lambda) + d * lambda``, with ``d_i[Q + j]`` the
    normalised original distance; row chunks bound the temporaries."""
    Q = jaccard.shape[0]
    jaccard *= np.float32(1 - lam)
    for a in range(0, Q, chunk_size):
        b = min(a + chunk_size, Q)
        orig = (qg[a:b].astype(dtype, copy=False) ** 2).astype(np.float32, copy=False)
        orig /= colmax[a:b, None]
        orig *= np.float32(lam)
        jaccard[a:b] += orig
    return jaccard


def re_ranking(
    q_g_dist,
    q_q_dist,
    g_g_dist,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int = 1024,
    max_triples: int = 4_000_000,
):
    """k-reciprocal re-ranking of query-gallery distances (Zhong et al. 2017).

    Same semantics and outputs as the common reference implementation (steps in the
    module docstring). It differs only in ways that keep the output on inputs without
    exact distance ties: neighbours from ``torch.topk`` with ties broken by lower index,
    sparse ``V`` and neighbour sets, and the (N, N) matrix never formed (row chunks of
    step 1 are built from the three input blocks on the fly).

    Args:
        q_g_dist: (Q, G) non-negative query-gallery distances (real numeric
            dtype: bool, complex and object are refused). Any positive scale
            works: values that would overflow or underflow when squared in
            float32 are rescaled exactly (see :func:`_normaliser`).
        q_q_dist: (Q, Q) query-query distances.
        g_g_dist: (G, G) gallery-gallery distances.
        k1: k of the k-reciprocal neighbours (the reference's 20).
        k2: size of the local query expansion (6; 1 disables it).
        lambda_value: weight of the original distance, in [0, 1].
        chunk_size: rows of the (N, N) matrix handled at once in the
            nearest-neighbour pass (memory ~ 12 x chunk_size x N bytes); a
            positive integer.
        max_triples: Jaccard work items per step (memory ~ 60 bytes each); a
            positive integer.

    Returns:
        (Q, G) float32 numpy array of re-ranked distances.

    Raises:
        ValueError: on shape mismatches, NaN/inf/negative or non-real distances,
            an empty gallery, bad k1/k2/lambda_value/chunk_size/max_triples, an
            item whose distances are all zero, or distances whose per-item
            maxima differ by more than ~2^125 (no float32 scale holds them).
    """
    _check_params(k1, k2, lambda_value, chunk_size, max_triples)
    full, colmax = _normaliser(*_check_inputs(q_g_dist, q_q_dist, g_g_dist))
    Q, N = full.Q, full.N
    kh = int(np.around(k1 / 2.0))
    kf, khf, kq = min(k1 + 1, N), min(kh + 1, N), min(k2, N)
    rank = _nearest(full, colmax, max(kf, khf, kq), chunk_size)
    V = _weights(full, colmax, _expanded_sets(rank, kf, khf, N))
    if k2 != 1:  # step 5: local query expansion
        P = _knn_indicator(rank, kq)
        V = ((P @ V) / np.float32(kq)).tocsr().astype(np.float32)
    del rank
    m = _min_sums(V, Q, max_triples)  # step 6: Jaccard distance, query rows x gallery columns only
    del V
    jaccard = _jaccard_in_place(m)
    return _blend(jaccard, full.qg, full.dtype, colmax, float(lambda_value), chunk_size)
