"""The learned importance scores alpha of Eqs. 1-3, looked at per clip pair (Sec. 3.1; notebooks 04-05).

For a trained ``reid_utils.models.aggregation.LearnedClipAggregator``: the M x M maps of
alpha and of the clip-pair cosines of sequence pairs (:func:`pair_importance`,
:func:`importance_panels`), every clip pair of a few queries against the gallery
(:func:`importance_table`), and two summaries of it: how far the weights are from uniform
and how they relate to the cosine (:func:`importance_summary`), and the mean weight of
clean / mixed / corrupted clip pairs at a corruption level (:func:`importance_by_corruption`,
Sec. 4.4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from reid_utils.training.features import FeatureBank

__all__ = ["pair_importance", "importance_table", "importance_by_corruption", "importance_summary", "importance_panels"]


@torch.no_grad()
def pair_importance(model, fq: torch.Tensor, fg: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Importance scores and clip-pair cosines of sequence pairs, as M x M maps.

    Args:
        model: a ``reid_utils.models.aggregation.LearnedClipAggregator`` (evaluated in eval mode).
        fq, fg: (B, M, D) clip features of B query / gallery sequences.

    Returns:
        ``(alpha, cos)``: two (B, M, M) arrays, ``alpha[b, i, j]`` the score of
        query clip i with gallery clip j (visiting order t = i*M + j).
    """
    was = model.training
    model.eval()
    try:
        _, alpha = model(fq, fg)
    finally:
        model.train(was)
    B, M = fq.shape[0], fq.shape[1]
    qn = torch.nn.functional.normalize(fq, dim=-1)
    gn = torch.nn.functional.normalize(fg, dim=-1)
    cos = torch.einsum("bid,bjd->bij", qn, gn)
    return alpha.reshape(B, M, fg.shape[1]).numpy(), cos.numpy()


def importance_table(
    model,
    query: FeatureBank,
    gallery: FeatureBank,
    num_queries: int = 20,
    seed: int = 0,
    q_feats: torch.Tensor | None = None,
    g_feats: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Every clip pair of ``num_queries`` random queries x all gallery sequences.

    Args:
        model: a trained :class:`LearnedClipAggregator`.
        query, gallery: banks (pids); ``q_feats`` (Q, M, D) / ``g_feats`` (G, M, D)
            override their features (e.g. a level's corrupted test set).
        num_queries: queries drawn at random (``seed``).

    Returns:
        DataFrame, one row per clip pair: ``q``, ``g`` (sequence indices),
        ``i``, ``j`` (clip indices), ``alpha``, ``alpha_rel`` (alpha over the
        mean alpha of its sequence pair: 1 = uniform weighting), ``cos`` and
        ``same`` (same identity).
    """
    qf = query.feats if q_feats is None else q_feats
    gf = gallery.feats if g_feats is None else g_feats
    rng = np.random.default_rng(seed)
    qs = np.sort(rng.choice(len(query), size=min(num_queries, len(query)), replace=False))
    G, M = gf.shape[0], gf.shape[1]
    frames = []
    for qi in qs:
        alpha, cos = pair_importance(model, qf[qi : qi + 1].expand(G, -1, -1), gf)
        rel = alpha / alpha.mean(axis=(1, 2), keepdims=True)
        ii, jj = np.meshgrid(np.arange(qf.shape[1]), np.arange(M), indexing="ij")
        frames.append(
            pd.DataFrame(
                {
                    "q": int(qi),
                    "g": np.repeat(np.arange(G), ii.size),
                    "i": np.tile(ii.ravel(), G),
                    "j": np.tile(jj.ravel(), G),
                    "alpha": alpha.reshape(-1),
                    "alpha_rel": rel.reshape(-1),
                    "cos": cos.reshape(-1),
                    "same": np.repeat(gallery.pids == query.pids[qi], ii.size),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def importance_by_corruption(table: pd.DataFrame, q_plan: np.ndarray, g_plan: np.ndarray) -> pd.DataFrame:
    """Mean relative importance of clean-clean, mixed and corrupted-corrupted clip pairs.

    Args:
        table: :func:`importance_table` rows.
        q_plan, g_plan: (Q, M), (G, M) corruption plans of the test features used.

    Returns:
        DataFrame indexed by pair type with the mean ``alpha_rel``, the mean
        cosine and the number of clip pairs.
    """
    qb = np.asarray(q_plan)[table["q"].to_numpy(), table["i"].to_numpy()]
    gb = np.asarray(g_plan)[table["g"].to_numpy(), table["j"].to_numpy()]
    kind = np.where(qb & gb, "both corrupted", np.where(qb | gb, "one corrupted", "both clean"))
    out = (
        table.assign(pair=kind)
        .groupby("pair")
        .agg(alpha_rel=("alpha_rel", "mean"), cos=("cos", "mean"), pairs=("cos", "size"))
    )
    return out.reindex([k for k in ("both clean", "one corrupted", "both corrupted") if k in out.index])


def importance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """How far the learned weights are from uniform, and how they relate to the cosine.

    Args:
        table: :func:`importance_table` rows.

    Returns:
        One-column DataFrame: spread of ``alpha_rel`` (std, 5th/95th
        percentiles), the median over sequence pairs of the *effective
        fraction of clip pairs used*, (sum alpha)^2 / (T sum alpha^2) with T =
        M^2 (1: uniform weights, 1/T: all weight on one pair), the mean
        ``alpha_rel`` of the first and of the last M visiting steps (the
        recurrence visits the pairs in a fixed order), and Spearman
        rank correlations of alpha with the clip-pair cosine (pooled over all
        clip pairs, and the mean over sequence pairs of the within-pair
        correlation).
    """
    per = table.groupby(["q", "g"])
    within = per[["alpha", "cos"]].corr(method="spearman").xs("alpha", level=2)["cos"]
    eff = per["alpha"].apply(lambda a: float(a.sum() ** 2 / (len(a) * (a**2).sum())))
    vals = {
        "clip pairs": len(table),
        "std of alpha / mean": float(table["alpha_rel"].std()),
        "5th percentile of alpha / mean": float(table["alpha_rel"].quantile(0.05)),
        "95th percentile of alpha / mean": float(table["alpha_rel"].quantile(0.95)),
        "effective fraction of clip pairs used, median": float(eff.median()),
        "mean alpha / mean, first query clip (steps t < M)": float(table.loc[table["i"] == 0, "alpha_rel"].mean()),
        "mean alpha / mean, last query clip (last M steps)": float(
            table.loc[table["i"] == table["i"].max(), "alpha_rel"].mean()
        ),
        "Spearman(alpha, cos), all clip pairs": float(table["alpha"].corr(table["cos"], method="spearman")),
        "Spearman(alpha, cos) within a sequence pair, mean": float(within.mean()),
    }
    return pd.DataFrame({"value": vals})


@torch.no_grad()
def importance_panels(
    model,
    query: FeatureBank,
    gallery: FeatureBank,
    query_index: int = 0,
    q_feats: torch.Tensor | None = None,
    g_feats: torch.Tensor | None = None,
    protocol_same_camera: bool = True,
) -> list:
    """M x M importance and cosine maps of one query with two gallery sequences.

    The gallery sequences are the query's best-scored true match and its
    best-scored impostor (the pair the batch-hard loss cares about); with
    ``protocol_same_camera`` the query's same-identity same-camera gallery
    items are skipped, as in the evaluation protocol.

    Returns:
        ``[(title, alpha (M, M), cos (M, M)), ...]`` for ``viz.plot_importance_heatmaps``.
    """
    qf = query.feats if q_feats is None else q_feats
    gf = gallery.feats if g_feats is None else g_feats
    qi = int(query_index)
    s = model.similarity_matrix(qf[qi : qi + 1], gf, progress=False)[0].numpy()
    same = gallery.pids == query.pids[qi]
    ok = ~(same & (gallery.camids == query.camids[qi])) if protocol_same_camera else np.ones_like(same)
    out = []
    for name, mask in (("true match", same & ok), ("impostor", ~same & ok)):
        if not mask.any():
            continue
        gi = int(np.flatnonzero(mask)[np.argmax(s[mask])])
        alpha, cos = pair_importance(model, qf[qi : qi + 1], gf[gi : gi + 1])
        title = f"query {qi} (pid {query.pids[qi]}) vs {name} {gi} (pid {gallery.pids[gi]})\nsimilarity s = {s[gi]:.3f}"
        out.append((title, alpha[0], cos[0]))
    return out
