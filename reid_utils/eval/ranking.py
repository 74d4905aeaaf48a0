"""Ranking evaluation for video re-ID: CMC and mAP (paper Sec. 4.1), vectorised.

Results are CMC at selected ranks and mAP, following the MARS (Zheng et al., ECCV
2016), DukeMTMC-VideoReID (Wu et al., CVPR 2018) and PRID2011 (10 random splits,
McLaughlin et al., CVPR 2016) protocols. Two conventions (``protocol=``):

``"torchreid"`` (default): ``eval_market1501`` of the common PyTorch re-ID code
(torchreid), used for MARS and DukeMTMC-VideoReID by most PyTorch papers. The gallery
is what the caller passes (MARS: the 9330 non-query test tracklets). Per query, gallery
items with the same pid *and* camid are junk (removed); a query without a true match
is skipped; ``AP = (1/n) * sum_k k / r_k``, ``r_k`` the rank (among kept items) of
the k-th true match.

``"mars_official"``: the MARS MATLAB evaluation (``utils/evaluation_mars.m``,
``compute_AP.m``). The gallery is *all* 11310 test tracklets, queries included
(:func:`mars_official_gallery`). Good = same pid, other camera; junk = same pid and
camera (the query itself among them) plus every pid -1 item; distractors (pid 0) stay
as negatives. AP is the trapezoid ``(1/n) * sum_k (p_{k-1} + p_k) / 2`` with
``p_k = k / r_k``, ``p_{k-1} = (k-1) / (r_k - 1)`` (1 when ``r_k = 1``); CMC and mAP
average over *all* queries.

Ties are broken by gallery index (a stable sort: MATLAB's order). DukeMTMC-VideoReID
and PRID2011 use ``torchreid``; PRID2011 averages 10 splits (:func:`evaluate_splits`).
The vectorised engine is :mod:`reid_utils.eval.match_ranks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reid_utils.data.datasets import id_arrays
from reid_utils.eval.match_ranks import (
    PidIndex,
    check_distmat,
    check_labels,
    check_positive_int,
    concat_distances,
    rank_chunk,
)

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
        counted: (Q,) bool, the queries CMC and mAP average over: ``valid``
            (``torchreid``) or all (``mars_official``); ``mAP == ap[counted].mean()``.
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
    counted: np.ndarray
    first_match_rank: np.ndarray
    num_matches: np.ndarray
    ranked_indices: np.ndarray
    ranked_matches: np.ndarray
    protocol: str


def _check_args(protocol: str, max_rank, chunk_size) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    check_positive_int(max_rank, "max_rank")
    check_positive_int(chunk_size, "chunk_size")


def _rank_all(d, qp, qc, gp, gc, official: bool, max_rank: int, details: bool, chunk_size: int) -> dict:
    """:func:`reid_utils.eval.match_ranks.rank_chunk` over all queries, chunk by chunk.

    Returns:
        dict of (Q,) ``ap``, ``first``, ``nmatch`` and (Q, R) ``ranked``,
        ``ranked_good`` (None unless ``details``).
    """
    Q = d.shape[0]
    pid_index = PidIndex(gp)
    junk_cols = np.flatnonzero(gp == -1) if official else None
    ap = np.empty(Q)
    first = np.empty(Q, dtype=np.int64)
    nmatch = np.empty(Q, dtype=np.int64)
    ranked = np.empty((Q, max_rank), dtype=np.int64) if details else None
    ranked_good = np.empty((Q, max_rank), dtype=bool) if details else None
    for a in range(0, Q, chunk_size):
        b = min(a + chunk_size, Q)
        r = rank_chunk(d[a:b], qp[a:b], qc[a:b], gp, gc, pid_index, junk_cols, official, max_rank, details)
        ap[a:b], first[a:b], nmatch[a:b] = r["ap"], r["first"], r["nmatch"]
        if details:
            ranked[a:b], ranked_good[a:b] = r["ranked"], r["ranked_good"]
    return {"ap": ap, "first": first, "nmatch": nmatch, "ranked": ranked, "ranked_good": ranked_good}


def _counted_queries(valid: np.ndarray, official: bool) -> np.ndarray:
    """The queries CMC and mAP average over: all (``mars_official``) or the valid ones."""
    if official:
        if not valid.all():
            warnings.warn(
                f"evaluate_rank(mars_official): {int((~valid).sum())} queries have no good "
                "match; they count as AP 0 and CMC 0 (MATLAB would give NaN)"
            )
        return np.ones(len(valid), dtype=bool)
    if not valid.any():
        raise ValueError(
            "evaluate_rank: no query has a true match in the gallery "
            "(all query identities are absent or only in the query's camera)"
        )
    return valid


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

    See the module docstring for the exact definition of both protocols. When a
    valid query keeps fewer than ``max_rank`` items, its CMC stays at 1 after its
    first match (torchreid would fail on the ragged array there). ``mars_official``:
    a query without a good match counts as AP 0 and CMC 0, with a warning (NaN in
    MATLAB; MARS queries always have one).

    Args:
        distmat: (Q, G) finite real distances, numpy array or torch tensor;
            integer distances are ranked exactly at any magnitude (beyond
            +-2^53 through their dense ranks, which float64 holds exactly:
            :func:`reid_utils.eval.match_ranks.exact_float_distances`);
            bool, complex and object dtypes are refused.
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
        ValueError: on shape mismatches, NaN/inf or non-real distances, an empty
            gallery, an unknown protocol, a bad ``max_rank``/``chunk_size``, or (torchreid)
            when no query has a match.
    """
    _check_args(protocol, max_rank, chunk_size)
    d = check_distmat(distmat)
    Q, G = d.shape
    qp = check_labels(q_pids, "q_pids", Q, "rows of distmat")
    gp = check_labels(g_pids, "g_pids", G, "columns of distmat")
    qc = check_labels(q_camids, "q_camids", Q, "rows of distmat")
    gc = check_labels(g_camids, "g_camids", G, "columns of distmat")
    if G < max_rank:
        warnings.warn(f"evaluate_rank: gallery has only {G} items; CMC truncated to rank {G}")
        max_rank = G
    official = protocol == "mars_official"
    r = _rank_all(d, qp, qc, gp, gc, official, max_rank, return_details, chunk_size)
    ap, first, nmatch = r["ap"], r["first"], r["nmatch"]
    valid = nmatch > 0
    counted = _counted_queries(valid, official)
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
        counted=counted,
        first_match_rank=first,
        num_matches=nmatch,
        ranked_indices=r["ranked"],
        ranked_matches=r["ranked_good"],
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
        as numpy arrays, ready for ``evaluate_rank(*..., protocol="mars_official")``;
        the distances in the common float dtype of the two inputs (float64 for
        integers within +-2^53), or integers when both are integers beyond that
        (ranked exactly by :func:`evaluate_rank`; next to floats they are refused).
    """
    qg = check_distmat(q_g_dist, "q_g_dist", keep_integers=True)
    qq = check_distmat(q_q_dist, "q_q_dist", keep_integers=True)
    Q, G = qg.shape
    if qq.shape != (Q, Q):
        raise ValueError(f"q_q_dist: expected shape {(Q, Q)}, got {qq.shape}")
    qp = check_labels(q_pids, "q_pids", Q, "queries")
    gp = check_labels(g_pids, "g_pids", G, "gallery items")
    qc = check_labels(q_camids, "q_camids", Q, "queries")
    gc = check_labels(g_camids, "g_camids", G, "gallery items")
    dist = concat_distances(qg, qq, ("q_g_dist", "q_q_dist"))
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
    q_pids, q_camids = id_arrays(dataset.query)
    g_pids, g_camids = id_arrays(dataset.gallery)
    cmc, mAP = evaluate_rank(
        dist,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        max_rank=min(max_rank, len(dataset.gallery)),
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
    for r in results:
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
