"""Scoring at scale (notebook 08): accuracy and time of the shortlist rescoring vs K (Sec. 3.1).

:func:`shortlist_sweep` scores a profile's clean test banks with the learned aggregator
trained at M_c^max = 0 in three ways, timing each: the mean-feature ranking alone (K = 0,
Sec. 4.3), the shortlist rescoring of ``reid_utils.eval.shortlist`` for every K, and the
full learned scoring (K = G). :func:`recommend_k` reads the smallest K that stays within
a tolerance of the full scoring.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import pandas as pd
import torch

from reid_utils.eval.shortlist import check_k, mean_feature_similarity, shortlist_similarity
from reid_utils.experiments.aggregators import scoring_model
from reid_utils.experiments.clip_banks import ClipBanks
from reid_utils.experiments.corruption_sweep import evaluate_similarity

__all__ = ["shortlist_sweep", "recommend_k"]


def _best_time(fn, repeats: int):
    best, res = float("inf"), None
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        res = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # GPU work is asynchronous
        best = min(best, time.perf_counter() - t0)
    return best, res


def shortlist_sweep(
    banks: ClipBanks, model: torch.nn.Module, ks: Iterable[int], *, protocol: str = "torchreid", repeats: int = 1
) -> pd.DataFrame:
    """mAP, rank-1 and scoring time vs shortlist length K on a profile's clean test banks.

    Args:
        banks: the profile's :class:`ClipBanks` (clean query and gallery are scored).
        model: the learned aggregator (``get_aggregator(banks, Method("learned"), 0).model``);
            it is moved to ``cfg.torch_device()`` (``scoring_model``; on CUDA: the fused kernel).
        ks: shortlist lengths (each in [1, G]; values > G are rejected).
        protocol: ``reid_utils.eval.ranking.evaluate_rank`` protocol
            (``reid_utils.eval.ranking.protocol_of(dataset)``).
        repeats: timings are the best of this many runs.

    Returns:
        DataFrame, one row per setting, ordered by K: ``mode`` (``mean-feature`` = K 0,
        ``shortlist``, ``full`` = the learned aggregator on all G), ``K``,
        ``pairs_rescored`` (Q*K), ``mAP``, ``rank1`` (in [0, 1], with ``_lo`` / ``_hi``
        95 % intervals), ``seconds`` (scoring wall
        time, ranking/evaluation excluded; the shortlist rows include their mean-feature
        stage) and ``time_vs_full``.
    """
    ks = [int(k) for k in ks]
    qb, gb = banks.clean["query"], banks.clean["gallery"]
    Q, G = qb.feats.shape[0], gb.feats.shape[0]
    for k in ks:
        check_k(k, G, "shortlist_sweep")
    device = banks.cfg.torch_device()
    model = scoring_model(banks.cfg, model)
    q, g = qb.feats.to(device), gb.feats.to(device)
    rows = []

    def add(mode, k, seconds, S):
        r = evaluate_similarity(S.cpu(), qb, gb, protocol, interval=True)
        metrics = {c: r[c] for c in ("mAP", "mAP_lo", "mAP_hi", "rank1", "rank1_lo", "rank1_hi")}
        rows.append({"mode": mode, "K": int(k), "pairs_rescored": int(Q * k), **metrics, "seconds": seconds})

    t, S = _best_time(lambda: mean_feature_similarity(q, g), repeats)
    add("mean-feature", 0, t, S)
    for k in sorted(set(ks)):
        if k == G:
            continue  # the full scoring's row below
        t, S = _best_time(lambda k=k: shortlist_similarity(model, q, g, k), repeats)
        add("shortlist", k, t, S)
    t, S = _best_time(lambda: model.similarity_matrix(q, g, progress=False), repeats)
    add("full", G, t, S)
    df = pd.DataFrame(rows)
    df["time_vs_full"] = df["seconds"] / float(df.loc[df["mode"] == "full", "seconds"].iloc[0])
    return df.sort_values("K", kind="stable").reset_index(drop=True)


def recommend_k(df: pd.DataFrame, tol: float = 0.005, metric: str = "mAP") -> dict:
    """The smallest shortlist K whose ``metric`` is within ``tol`` of the full scoring's.

    Args:
        df: :func:`shortlist_sweep` rows.
        tol: allowed loss, in the metric's units ([0, 1]; 0.005 = half a point).
        metric: ``"mAP"`` or ``"rank1"``.

    Returns:
        ``{"K", "metric", "value", "full", "seconds", "full_seconds", "speedup"}`` for that K
        (the full scoring itself, K = G, when no shortlist qualifies).
    """
    if metric not in df.columns or tol < 0:
        raise ValueError(f"recommend_k: metric must be a column of df and tol >= 0, got {metric!r}, {tol}")
    full = df[df["mode"] == "full"].iloc[0]
    ok = df[(df["mode"] != "mean-feature") & (df[metric] >= full[metric] - tol)].sort_values("K")
    best = ok.iloc[0] if len(ok) else full
    return {
        "K": int(best["K"]),
        "metric": metric,
        "value": float(best[metric]),
        "full": float(full[metric]),
        "seconds": float(best["seconds"]),
        "full_seconds": float(full["seconds"]),
        "speedup": float(full["seconds"] / best["seconds"]),
    }
