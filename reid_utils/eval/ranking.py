"""Ranking evaluation for video re-ID: CMC and mAP, vectorised.

Paper Sec. 4.1 ("Evaluation protocol and evaluation metrics"): results are
reported as CMC at selected ranks and mAP, following the MARS
(Zheng et al., ECCV 2016), DukeMTMC-VideoReID (Wu et al., CVPR 2018) and
PRID2011 (10 random splits, McLaughlin et al., CVPR 2016) protocols.

Two conventions are implemented (``protocol=``):

``"torchreid"`` (default): the ``eval_market1501`` function of the common
PyTorch re-ID code (torchreid / deep-person-reid), used for MARS and
DukeMTMC-VideoReID by most PyTorch papers. The gallery is whatever the caller
passes (for MARS: the 9330 non-query test tracklets). For each query, gallery
items with the same pid *and* the same camid are removed ("junk"); a query
left without any true match is skipped; CMC is averaged over the remaining
("valid") queries; AP is the non-interpolated average precision,
``AP = (1/n) * sum_k k / r_k`` with ``r_k`` the rank (among kept items) of the
k-th true match.

``"mars_official"``: the MATLAB evaluation shipped with MARS
(github.com/liangzheng06/MARS-evaluation, ``utils/evaluation_mars.m`` and
``compute_AP.m``). There the gallery is *all* 11310 test tracklets, queries
included (build it with :func:`mars_official_gallery`). For each query, good =
same pid and a different camera; junk = same pid and same camera (the query
itself among them) plus every gallery item with pid -1; distractors (pid 0)
stay in the gallery as negatives. AP is the trapezoidal interpolation of
``compute_AP.m``: ``AP = (1/n) * sum_k (p_{k-1} + p_k) / 2`` with
``p_k = k / r_k`` and ``p_{k-1} = (k-1) / (r_k - 1)`` (1 when ``r_k = 1``),
i.e. the precision just before and at the k-th good item. CMC and mAP are
averaged over *all* queries (MARS queries always have a good match; a query
without one would be NaN in MATLAB; here it counts as AP 0 and CMC 0 and a
warning is emitted).

CMC beyond the end of a short gallery: when a valid query keeps fewer than
``max_rank`` items, its CMC stays at 1 after its first match (torchreid would
fail on the ragged array there). DukeMTMC-VideoReID and PRID2011 (query = one
camera, gallery = the other) use the ``torchreid`` protocol; PRID2011 numbers
are averaged over 10 splits with :func:`evaluate_splits`.

Ties. Both reference codes sort each query's distances (torchreid with
``np.argsort``, whose tie order is unspecified; MATLAB with a stable sort).
Here ties are always broken by gallery index (a stable ascending sort), which
is exactly MATLAB's order.

How it is computed. CMC and AP only need the rank of every true match among
the kept gallery items, rank = 1 + #(items before it) - #(junk before it).
Per chunk of queries, each row's distances are cast to float32 and sorted
(values only: numpy's SIMD sort, about 2-3x cheaper than an argsort, and no
index arrays); every true match is binary-searched in its row; the few items
whose float32 value collides with a match's are compared exactly (distance,
then gallery index), so the result is exact for float64 input too. Junk
before a match is counted directly (same pid, same camera: a handful per
query) or with the same sorted search (pid -1 junk of ``mars_official``).
No Python loop runs over gallery items; one cheap binary search per query
remains. ``benchmarks/bench_evaluation.py`` compares it with per-query loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

PROTOCOLS = ("torchreid", "mars_official")

# Which convention each dataset's numbers use by default (paper Sec. 4.1).
DATASET_PROTOCOL = {
    "mars": "torchreid",
    "dukemtmc-videoreid": "torchreid",
    "prid2011": "torchreid",
    "synthetic": "torchreid",
}


@dataclass
class RankResult:
    """Everything :func:`evaluate_rank` computes, for plots and tables.

    Attributes:
        cmc: (R,) float64, CMC curve, ``cmc[r]`` = fraction of counted
            queries whose first true match is within the top ``r + 1``.
        mAP: mean of ``ap`` over the counted queries.
        ap: (Q,) float64, per-query AP; NaN for queries skipped by the
            ``torchreid`` protocol.
        valid: (Q,) bool, query has at least one true (non-junk) match.
        first_match_rank: (Q,) int64, 1-based rank of the first true match
            among kept gallery items; 0 where there is none.
        num_matches: (Q,) int64, number of true (non-junk) matches.
        ranked_indices: (Q, R) int64, gallery indices of the top ``R`` kept
            (non-junk) items in ranked order; -1 where fewer remain.
        ranked_matches: (Q, R) bool, whether ``ranked_indices`` is a true match.
        protocol: the protocol used.
    """

    cmc: np.ndarray
    mAP: float
    ap: np.ndarray
    valid: np.ndarray
    first_match_rank: np.ndarray
    num_matches: np.ndarray
    ranked_indices: np.ndarray
    ranked_matches: np.ndarray
    protocol: str


# ----------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------
def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise ValueError(f"{name}: expected a numeric array, got dtype object")
    return arr


def _check_distmat(distmat, name: str = "distmat") -> np.ndarray:
    d = _as_numpy(distmat, name)
    if d.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (num_query, num_gallery) matrix, got shape {d.shape}")
    if d.shape[0] == 0:
        raise ValueError(f"{name}: there are no queries (shape {d.shape})")
    if d.shape[1] == 0:
        raise ValueError(f"{name}: the gallery is empty (shape {d.shape})")
    if d.dtype == bool or not np.issubdtype(d.dtype, np.number) or np.issubdtype(d.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real distances, got dtype {d.dtype}")
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    if not np.isfinite(d).all():
        if np.isnan(d).any():
            raise ValueError(f"{name}: contains NaN distances")
        raise ValueError(f"{name}: contains infinite distances (use a large finite value to push items down)")
    return d


def _check_labels(x, name: str, length: int, what: str) -> np.ndarray:
    t = _as_numpy(x, name)
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
class _PidIndex:
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


def _rank_chunk(d, qp, qc, gp, gc, pid_index, junk_cols, official: bool, max_rank: int, details: bool):
    """Ranks of all true matches for one chunk of queries.

    Args:
        d: (C, G) distances. qp, qc: (C,) query pids/camids. gp, gc: (G,).
        pid_index: :class:`_PidIndex` of ``gp``. junk_cols: gallery columns
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
        masked = np.array(d, dtype=np.float64 if d.dtype == np.float64 else np.float32)
        jr, js = np.nonzero(is_junk)
        masked[jr, cand[jr, js]] = np.inf
        if junk_cols is not None and junk_cols.size:
            masked[:, junk_cols] = np.inf
        idx = stable_topk_smallest(torch.from_numpy(masked), min(max_rank, G)).numpy()
        kept = np.isfinite(np.take_along_axis(masked, idx, 1))
        out["ranked"] = np.where(kept, idx, -1)
        out["ranked_good"] = kept & (gp[idx] == qp[:, None])
    return out


def evaluate_rank(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    protocol: str = "torchreid",
    return_details: bool = False,
    chunk_size: int = 256,
):
    """CMC and mAP of a query-gallery distance matrix (smaller = more similar).

    See the module docstring for the exact definition of both protocols.

    Args:
        distmat: (Q, G) finite distances, numpy array or torch tensor.
        q_pids, g_pids: (Q,), (G,) integer identities.
        q_camids, g_camids: (Q,), (G,) integer camera ids.
        max_rank: length of the CMC curve; truncated to G (with a warning)
            when the gallery is smaller, as torchreid does.
        protocol: ``"torchreid"`` (default) or ``"mars_official"``.
        return_details: return a :class:`RankResult` instead of a tuple.
        chunk_size: queries processed at once (temporaries ~ 10 bytes x
            chunk_size x G).

    Returns:
        ``(cmc, mAP)``: (R,) float64 numpy array and a float; or a
        :class:`RankResult` when ``return_details``.

    Raises:
        ValueError: on shape mismatches, NaN/inf distances, an empty gallery,
            an unknown protocol, or (torchreid) when no query has a match.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank: expected a positive integer, got {max_rank!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    d = _check_distmat(distmat)
    Q, G = d.shape
    qp = _check_labels(q_pids, "q_pids", Q, "rows of distmat")
    gp = _check_labels(g_pids, "g_pids", G, "columns of distmat")
    qc = _check_labels(q_camids, "q_camids", Q, "rows of distmat")
    gc = _check_labels(g_camids, "g_camids", G, "columns of distmat")
    if G < max_rank:
        warnings.warn(f"evaluate_rank: gallery has only {G} items; CMC truncated to rank {G}")
        max_rank = G
    official = protocol == "mars_official"
    pid_index = _PidIndex(gp)
    junk_cols = np.flatnonzero(gp == -1) if official else None

    ap = np.empty(Q)
    first = np.empty(Q, dtype=np.int64)
    nmatch = np.empty(Q, dtype=np.int64)
    ranked = np.empty((Q, max_rank), dtype=np.int64) if return_details else None
    ranked_good = np.empty((Q, max_rank), dtype=bool) if return_details else None
    for a in range(0, Q, chunk_size):
        b = min(a + chunk_size, Q)
        r = _rank_chunk(d[a:b], qp[a:b], qc[a:b], gp, gc, pid_index, junk_cols, official, max_rank, return_details)
        ap[a:b], first[a:b], nmatch[a:b] = r["ap"], r["first"], r["nmatch"]
        if return_details:
            ranked[a:b], ranked_good[a:b] = r["ranked"], r["ranked_good"]

    valid = nmatch > 0
    if official:
        if not valid.all():
            warnings.warn(
                f"evaluate_rank(mars_official): {int((~valid).sum())} queries have no good "
                "match; they count as AP 0 and CMC 0 (MATLAB would give NaN)"
            )
        counted = np.ones(Q, dtype=bool)
    else:
        if not valid.any():
            raise ValueError(
                "evaluate_rank: no query has a true match in the gallery "
                "(all query identities are absent or only in the query's camera)"
            )
        counted = valid
    hits = first[counted & valid]
    hist = np.bincount(np.minimum(hits, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / counted.sum()
    mAP = float(ap[counted].mean())
    if not return_details:
        return cmc, mAP
    if not official:
        ap[~valid] = np.nan
    return RankResult(
        cmc=cmc,
        mAP=mAP,
        ap=ap,
        valid=valid,
        first_match_rank=first,
        num_matches=nmatch,
        ranked_indices=ranked,
        ranked_matches=ranked_good,
        protocol=protocol,
    )


# ----------------------------------------------------------------------------
# protocol helpers
# ----------------------------------------------------------------------------
def mars_official_gallery(q_g_dist, q_q_dist, q_pids, g_pids, q_camids, g_camids):
    """Inputs for ``protocol="mars_official"`` from the usual query/gallery split.

    The official MARS evaluation ranks *all* test tracklets (the 9330 gallery
    tracklets and the 1980 queries). This appends the query tracklets to the
    gallery: distances ``[q_g_dist, q_q_dist]`` and labels ``[g, q]``. The
    official MATLAB code keeps the original ``tracks_test_info`` order, which
    differs from this one only in how exact distance ties are broken.

    Args:
        q_g_dist: (Q, G) query-gallery distances. q_q_dist: (Q, Q).
        q_pids, g_pids, q_camids, g_camids: labels as for :func:`evaluate_rank`.

    Returns:
        ``(distmat (Q, G+Q), q_pids, all_pids (G+Q,), q_camids, all_camids)``
        as numpy arrays, ready for ``evaluate_rank(*..., protocol="mars_official")``.
    """
    qg = _check_distmat(q_g_dist, "q_g_dist")
    qq = _check_distmat(q_q_dist, "q_q_dist")
    Q, G = qg.shape
    if qq.shape != (Q, Q):
        raise ValueError(f"q_q_dist: expected shape {(Q, Q)}, got {qq.shape}")
    qp = _check_labels(q_pids, "q_pids", Q, "queries")
    gp = _check_labels(g_pids, "g_pids", G, "gallery items")
    qc = _check_labels(q_camids, "q_camids", Q, "queries")
    gc = _check_labels(g_camids, "g_camids", G, "gallery items")
    dist = np.concatenate([qg, qq.astype(qg.dtype, copy=False)], axis=1)
    return dist, qp, np.concatenate([gp, qp]), qc, np.concatenate([gc, qc])


def protocol_of(dataset) -> str:
    """The :func:`evaluate_rank` protocol matching how ``dataset`` was split
    (``official-mars`` split -> ``mars_official``, anything else -> ``torchreid``)."""
    return "mars_official" if getattr(dataset, "protocol", "") == "official-mars" else "torchreid"


def evaluate_features(qf: torch.Tensor, gf: torch.Tensor, dataset, max_rank: int = 20) -> dict:
    """mAP / CMC of ranking the gallery by Euclidean distance of features.

    Args:
        qf: (Q, D) query features; gf: (G, D) gallery features.
        dataset: the ``VideoDataset`` the features came from (pids, camids, protocol).

    Returns:
        dict with ``mAP``, ``rank1``, ``rank5``, ``cmc`` (max_rank,), all in [0, 1].
    """
    dist = torch.cdist(qf.double(), gf.double()).numpy()
    q, g = dataset.query, dataset.gallery
    cmc, mAP = evaluate_rank(
        dist,
        np.array([t.pid for t in q]),
        np.array([t.pid for t in g]),
        np.array([t.camid for t in q]),
        np.array([t.camid for t in g]),
        max_rank=min(max_rank, len(g)),
        protocol=protocol_of(dataset),
    )
    return {
        "mAP": float(mAP),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(4, len(cmc) - 1)]),
        "cmc": np.asarray(cmc),
    }


def cmc_at(cmc, ranks: Sequence[int] = (1, 5, 10, 20)) -> dict:
    """``{"R1": cmc[0], "R5": cmc[4], ...}`` for the ranks a table reports."""
    cmc = np.asarray(cmc)
    out = {}
    for r in ranks:
        if not 1 <= r <= len(cmc):
            raise ValueError(f"ranks: rank {r} outside the CMC curve of length {len(cmc)}")
        out[f"R{r}"] = float(cmc[r - 1])
    return out


@dataclass
class SplitSummary:
    """Mean and standard deviation over evaluation splits (e.g. PRID2011's 10).

    Attributes:
        cmc_mean, cmc_std: (R,) float64 arrays.
        mAP_mean, mAP_std: floats.
        num_splits: number of splits averaged.
        ddof: delta degrees of freedom of the std (0: population std).
    """

    cmc_mean: np.ndarray
    cmc_std: np.ndarray
    mAP_mean: float
    mAP_std: float
    num_splits: int
    ddof: int


def summarize_splits(results: Iterable, ddof: int = 0) -> SplitSummary:
    """Average ``(cmc, mAP)`` results over splits (PRID2011 protocol, Sec. 4.1).

    The paper averages over 10 random train/test splits; it does not say which
    standard deviation it would report, so ``ddof`` is exposed (default 0,
    numpy's ``np.std``).

    Args:
        results: iterable of ``(cmc, mAP)`` tuples or :class:`RankResult`.
        ddof: passed to ``np.std``.

    Returns:
        :class:`SplitSummary`.
    """
    cmcs, maps = [], []
    for i, r in enumerate(results):
        cmc, m = (r.cmc, r.mAP) if isinstance(r, RankResult) else r
        cmcs.append(np.asarray(cmc, dtype=np.float64))
        maps.append(float(m))
    if not cmcs:
        raise ValueError("results: expected at least one split result")
    lengths = {len(c) for c in cmcs}
    if len(lengths) != 1:
        raise ValueError(f"results: CMC curves of different lengths {sorted(lengths)}")
    if len(cmcs) <= ddof:
        raise ValueError(f"ddof: {ddof} needs more than {len(cmcs)} splits")
    cmc_arr, map_arr = np.stack(cmcs), np.asarray(maps)
    return SplitSummary(
        cmc_mean=cmc_arr.mean(0),
        cmc_std=cmc_arr.std(0, ddof=ddof),
        mAP_mean=float(map_arr.mean()),
        mAP_std=float(map_arr.std(ddof=ddof)),
        num_splits=len(cmcs),
        ddof=ddof,
    )


def evaluate_splits(splits: Iterable, max_rank: int = 20, protocol: str = "torchreid", ddof: int = 0) -> SplitSummary:
    """Evaluate several splits and summarise them (PRID2011: 10 splits).

    Args:
        splits: iterable of ``(distmat, q_pids, g_pids, q_camids, g_camids)``.
        max_rank, protocol: as for :func:`evaluate_rank`.
        ddof: as for :func:`summarize_splits`.
    """
    return summarize_splits((evaluate_rank(*s, max_rank=max_rank, protocol=protocol) for s in splits), ddof=ddof)
