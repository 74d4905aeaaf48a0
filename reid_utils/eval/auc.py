"""ROC AUC and a cluster bootstrap of it (the statistics of Sec. 4.6 / Fig. 7, measured).

* **AUC** (:func:`roc_auc`) = P(score of a positive > score of a negative)
  + 0.5 P(tie): the Mann-Whitney statistic over all positive x negative pairs,
  computed from mid-ranks. 0.5: the score does not separate the label; 1:
  every positive scores above every negative.
* **Cluster bootstrap** (:func:`cluster_bootstrap_auc`): when observations
  come in dependent clusters (e.g. the clip pairs of one query tracklet), the
  bootstrap resamples *clusters* with replacement, keeping all their
  observations, and reports the percentile interval. Done exactly and
  cheaply: the Mann-Whitney count splits into a C x C matrix K[c, c']
  (positives of cluster c above negatives of cluster c';
  :func:`cluster_auc_parts`), and a replicate with cluster multiplicities w
  has AUC = w'Kw / ((w.n_pos)(w.n_neg)) (:func:`weighted_cluster_auc`), equal
  to the AUC of the explicitly resampled data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_auc", "cluster_auc_parts", "weighted_cluster_auc", "cluster_bootstrap_auc"]


def _check_scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    lab = np.asarray(labels).ravel()
    if lab.shape != s.shape:
        raise ValueError(f"labels: expected {s.size} labels (one per score), got {lab.size}")
    if s.size == 0:
        raise ValueError("scores: expected at least one score")
    if lab.dtype != bool:
        if not np.isin(lab, [0, 1]).all():
            raise ValueError("labels: expected booleans or 0/1 values")
        lab = lab.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("scores: expected finite values (found NaN or inf)")
    return s, lab


def roc_auc(scores, labels) -> float:
    """Rank-based ROC AUC: the Mann-Whitney U over all positive x negative pairs, ties count 1/2.

    AUC = (sum of the mid-ranks of the positives - n_pos (n_pos + 1) / 2) / (n_pos n_neg).

    Args:
        scores: (N,) finite scores (higher = more "positive").
        labels: (N,) bool (or 0/1).

    Returns:
        AUC in [0, 1].
    """
    s, lab = _check_scores_labels(scores, labels)
    npos, nneg = int(lab.sum()), int((~lab).sum())
    if npos == 0 or nneg == 0:
        raise ValueError(f"labels: need at least one positive and one negative, got {npos} and {nneg}")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(len(s))
    start = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])  # tie groups in sorted order
    end = np.r_[start[1:], len(s)]
    mid = (start + end + 1) / 2.0  # 1-based mid-rank of each group
    ranks[order] = np.repeat(mid, end - start)
    return float((ranks[lab].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def _below_counts(s, lab, cl, C: int, pos_first: bool) -> tuple[np.ndarray, bool]:
    """K[c, c'] = sum over positives p of cluster c of #negatives of cluster c' sorted before p.

    Within ties, ``pos_first`` puts positives before negatives (then "before" =
    strictly lower), else after (lower or equal). One ``searchsorted`` per
    cluster of the larger class, with the smaller class's sorted positions as
    queries: O(C * N_small * log N).

    Returns:
        ``(K, mixed_ties)``: mixed_ties says whether some positive and some
        negative have equal scores (only then do the two tie orders differ).
    """
    tie = (~lab if pos_first else lab).astype(np.int8)
    order = np.lexsort((tie, s))
    lab_o, cl_o = lab[order], cl[order]
    px, nx = np.flatnonzero(lab_o), np.flatnonzero(~lab_o)  # sorted positions of each class
    pc, nc = cl_o[px], cl_o[nx]
    K = np.zeros((C, C))
    if len(px) <= len(nx):  # loop over negative clusters: negatives of c' before each positive
        srt = np.argsort(nc, kind="stable")
        cls, first = np.unique(nc[srt], return_index=True)
        for c2, a, b in zip(cls, first, np.r_[first[1:], len(srt)]):
            before = np.searchsorted(nx[srt[a:b]], px)
            K[:, c2] = np.bincount(pc, weights=before, minlength=C)
    else:  # loop over positive clusters: positives of c after each negative
        srt = np.argsort(pc, kind="stable")
        cls, first = np.unique(pc[srt], return_index=True)
        for c1, a, b in zip(cls, first, np.r_[first[1:], len(srt)]):
            after = (b - a) - np.searchsorted(px[srt[a:b]], nx)
            K[c1, :] = np.bincount(nc, weights=after, minlength=C)
    s_o = s[order]
    if pos_first:  # a tie group holding both classes has a positive directly followed by a negative
        mixed = bool(np.any((s_o[1:] == s_o[:-1]) & lab_o[:-1] & ~lab_o[1:]))
    else:
        mixed = bool(np.any((s_o[1:] == s_o[:-1]) & ~lab_o[:-1] & lab_o[1:]))
    return K, mixed


def cluster_auc_parts(scores, labels, clusters) -> dict:
    """The cluster decomposition of the Mann-Whitney count: K, n_pos, n_neg per cluster (module doc).

    Args:
        scores: (N,) finite scores; labels: (N,) bool; clusters: (N,) integer
            cluster ids (e.g. the query tracklet of each clip pair).

    Returns:
        dict with ``K`` (C, C) (ties count 1/2), ``n_pos``, ``n_neg`` (C,) and
        ``ids`` (C,) the cluster ids in the order of K's rows.
    """
    s, lab = _check_scores_labels(scores, labels)
    c = np.asarray(clusters).ravel()
    if c.shape != s.shape or not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"clusters: expected an integer array of shape {s.shape}, got {c.dtype} {c.shape}")
    ids, cl = np.unique(c, return_inverse=True)
    C = len(ids)
    u, inv = np.unique(s, return_inverse=True)
    if len(u) <= 256:  # few distinct scores (e.g. a 0/1 selection): exact count tables (U, C)
        U = len(u)
        P = np.bincount(inv[lab] * C + cl[lab], minlength=U * C).reshape(U, C).astype(np.float64)
        N = np.bincount(inv[~lab] * C + cl[~lab], minlength=U * C).reshape(U, C).astype(np.float64)
        below = np.cumsum(N, axis=0) - N + 0.5 * N  # negatives lower, plus half the equal ones
        K = P.T @ below
        return {"K": K, "n_pos": P.sum(0), "n_neg": N.sum(0), "ids": ids}
    K, mixed = _below_counts(s, lab, cl, C, pos_first=True)
    if mixed:  # ties between a positive and a negative count 1/2: mean of "lower" and "lower or equal"
        K = 0.5 * (K + _below_counts(s, lab, cl, C, pos_first=False)[0])
    return {
        "K": K,
        "n_pos": np.bincount(cl, weights=lab, minlength=C),
        "n_neg": np.bincount(cl, weights=~lab, minlength=C),
        "ids": ids,
    }


def weighted_cluster_auc(parts: dict, weights: np.ndarray) -> np.ndarray:
    """AUC of data in which cluster c appears ``weights[..., c]`` times: w'Kw / ((w.n_pos)(w.n_neg)).

    Args:
        parts: :func:`cluster_auc_parts`.
        weights: (C,) or (B, C) non-negative cluster multiplicities.

    Returns:
        () or (B,) AUCs; NaN where a replicate has no positive or no negative.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[-1] != len(parts["ids"]) or (w < 0).any():
        raise ValueError(
            f"weights: expected non-negative multiplicities over {len(parts['ids'])} clusters, got shape {w.shape}"
        )
    num = ((w @ parts["K"]) * w).sum(axis=-1)
    den = (w @ parts["n_pos"]) * (w @ parts["n_neg"])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _boot_weights(num_clusters: int, num_boot: int, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_clusters, np.full(num_clusters, 1.0 / num_clusters), size=int(num_boot))


def cluster_bootstrap_auc(
    scores, labels, clusters, num_boot: int = 1000, level: float = 0.95, seed: int = 0, return_replicates: bool = False
) -> dict:
    """AUC with a percentile bootstrap interval that resamples clusters (module doc).

    Args:
        scores, labels, clusters: see :func:`cluster_auc_parts`.
        num_boot: bootstrap replicates (>= 1).
        level: interval coverage in (0, 1).
        seed: seed of the resampling.
        return_replicates: also return the (num_boot,) replicate AUCs.

    Returns:
        dict ``auc``, ``lo``, ``hi``, ``n_pos``, ``n_neg``, ``clusters``,
        ``boot_valid`` (replicates with both classes), and ``replicates``
        when asked. ``auc`` is NaN (no interval) when a class is empty.
    """
    if int(num_boot) < 1:
        raise ValueError(f"num_boot: expected >= 1, got {num_boot}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level: expected a value in (0, 1), got {level}")
    parts = cluster_auc_parts(scores, labels, clusters)
    C = len(parts["ids"])
    npos, nneg = float(parts["n_pos"].sum()), float(parts["n_neg"].sum())
    out = {
        "auc": np.nan,
        "lo": np.nan,
        "hi": np.nan,
        "n_pos": int(npos),
        "n_neg": int(nneg),
        "clusters": C,
        "boot_valid": 0,
    }
    reps = np.full(int(num_boot), np.nan)
    if npos > 0 and nneg > 0:
        out["auc"] = float(parts["K"].sum() / (npos * nneg))
        reps = weighted_cluster_auc(parts, _boot_weights(C, num_boot, seed))
        ok = reps[np.isfinite(reps)]
        out["boot_valid"] = int(len(ok))
        if len(ok):
            a = (1.0 - float(level)) / 2.0
            out["lo"], out["hi"] = (float(x) for x in np.quantile(ok, [a, 1.0 - a]))
    if return_replicates:
        out["replicates"] = reps
    return out
