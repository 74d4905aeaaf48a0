"""Importance scores vs what went wrong in a clip (Sec. 3.1, Eqs. 1-4; Fig. 7), measured.

The paper argues from four hand-picked examples (Fig. 7) that the learned
aggregator gives *low* importance alpha_t = g(r_{t-1} - c_t) (Eq. 1) to clip
pairs with occlusion, no person, a tracking error (identity switch) or a bad
crop, so that they hardly count in the similarity
s = sum_t alpha_t cos_t / sum_t alpha_t (Eq. 3). The synthetic benchmark
annotates every frame, so the claim can be *measured*. This module has:

(a) **Per clip pair of chosen sequence pairs** (:func:`clip_pair_table`): the
    importance alpha from ``LearnedClipAggregator.forward`` (the reference
    recurrence), the clip-pair cosine, the sequence similarity and the frame
    indices of both clips; :func:`choose_examples` picks illustrative pairs
    (a true match and the hardest non-match per query) for the Fig. 7-like
    figure, and :func:`extreme_clip_pairs` their highest/lowest-importance
    clip pairs.
(b) **The measurement** (:func:`measure`): over query x gallery sequence pairs
    of the test set (subsampled with a seed, :func:`sample_pairs`), each clip
    pair gets labels "contains nuisance X" from the per-frame annotations
    (:func:`clip_nuisance_fractions`, :func:`clip_labels`) and "corrupted"
    from the corrupted test plan of ``experiments_agg.test_plan``; then the
    ROC AUC of *low* importance for each label (:func:`roc_auc`, rank based)
    with a cluster bootstrap interval over query tracklets
    (:func:`cluster_bootstrap_auc`), for the learned model and for the top-t%
    baseline's implicit selection (Eq. 9, :func:`topt_columns`).
(c) **Normalisation within a sequence pair.** alpha is only meaningful
    relative to the other M^2 pairs of the same sequence pair (Eq. 3 divides
    by their sum; an overall scale of g cancels), so every alpha is divided by
    the mean alpha of its sequence pair (``alpha_rel``, 1 = uniform weight)
    before clip pairs of different sequence pairs are pooled into one AUC.
    The top-t% scores are within-pair quantities by construction (selected or
    not; the within-pair rank of the projected cosine).

Choices (the paper measures none of this; documented here once):

* **A clip contains X** if at least ``min_fraction`` (default 0.5) of its L
  frame slots carry the annotation (frame indices as fed to the I3D, so a
  frame repeated in a short tracklet counts as often as it is used). Half the
  clip: a nuisance that dominates the clip feature, as in the paper's
  examples; ``min_fraction = 1 / L`` gives "any frame".
* **A clip pair contains X** if its query clip or its gallery clip does.
* **Corrupted** (Sec. 4.4): the clip pair has at least one clip taken from the
  corrupted bank in the fixed test plan of the level; at M_c^max = 0 there
  are none and that AUC is undefined (NaN).
* **Scores of "low importance"** (higher = less important), per method:
  ``learned``: -alpha_rel; ``learned-step``: -alpha_rel divided by the mean
  alpha_rel of the same visiting step t over all measured pairs (the
  recurrence treats steps differently - e.g. alpha_1 = g(-c_1) sees no
  running mean - and this removes that systematic part, a robustness check);
  ``topt-select``: 1 if the pair is *not* among the
  top t% of projected cosines of its sequence pair, else 0 (Eq. 9's implicit
  0/1 weight; t = 50 % by default, the middle of Table 2's range, from the
  top-t%-eval model of the same level); ``topt-rank``: minus the within-pair
  rank of the projected cosine scaled to [0, 1] (the graded version of the
  selection: how highly the pair ranks).
* **AUC** = P(score of a positive > score of a negative) + 0.5 P(tie), the
  Mann-Whitney statistic over all positive x negative clip pairs pooled over
  sequence pairs. 0.5: the score does not separate the label; 1: every pair
  with X gets lower importance than every pair without.
* **Pair subsampling** (:func:`sample_pairs`): when Q x G exceeds
  ``max_pairs``, every query keeps ``max_pairs // Q`` gallery sequences drawn
  uniformly without replacement (seeded), so every query contributes equally.
* **Bootstrap**: clip pairs of one query tracklet are not independent (same
  frames, same gallery draws), so the bootstrap resamples *query tracklets*
  (clusters) with replacement, keeping all their clip pairs, and reports the
  percentile interval. Gallery tracklets recur across queries; that
  dependence is not resampled, so the interval is, if anything, a little
  narrow. Implemented exactly and cheaply: the Mann-Whitney count splits into
  a C x C matrix K[c, c'] (positives of cluster c above negatives of cluster
  c'), and a replicate with cluster multiplicities w has AUC =
  w'Kw / ((w.n_pos)(w.n_neg)) (:func:`cluster_auc_parts`), equal to the AUC of
  the explicitly resampled data (tested).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from reid_utils.synth import NUISANCES  # the per-frame annotation columns (one definition)

__all__ = [
    "NUISANCES",
    "CORRUPTED",
    "METHODS",
    "clip_nuisance_fractions",
    "clip_labels",
    "split_clip_labels",
    "sample_pairs",
    "clip_pair_table",
    "topt_columns",
    "pair_labels",
    "choose_examples",
    "extreme_clip_pairs",
    "extremes_vs_labels",
    "roc_auc",
    "cluster_auc_parts",
    "weighted_cluster_auc",
    "cluster_bootstrap_auc",
    "importance_auc",
    "compare_methods",
    "default_level",
    "learned_at_level",
    "measure",
    "describe_auc",
]

CORRUPTED = "corrupted"
#: method -> (readable label, column of the clip-pair table holding its "low importance" score)
METHODS = {
    "learned": ("learned: low alpha", "low_learned"),
    "learned-step": ("learned: low alpha, step-adjusted", "low_learned_step"),
    "topt-select": ("top-t%: not selected", "low_topt_select"),
    "topt-rank": ("top-t%: low projected-cosine rank", "low_topt_rank"),
}


# --------------------------------------------------------------------------- #
# labels
# --------------------------------------------------------------------------- #
def clip_nuisance_fractions(tracklets: Sequence, clip_frames, nuisances: Sequence[str] = NUISANCES) -> np.ndarray:
    """Fraction of each clip's frame slots carrying each annotated nuisance.

    Args:
        tracklets: N tracklets with per-frame ``annotations`` (synthetic
            benchmark; ``datasets.Tracklet``).
        clip_frames: (N, M, L) frame indices of the clips (``FeatureBank.indices``).
        nuisances: annotation fields.

    Returns:
        (N, M, K) float array in [0, 1], K = len(nuisances).
    """
    idx = np.asarray(clip_frames)
    if idx.ndim != 3:
        raise ValueError(f"clip_frames: expected an (N, M, L) array of frame indices, got shape {idx.shape}")
    if len(tracklets) != idx.shape[0]:
        raise ValueError(
            f"tracklets: expected {idx.shape[0]} tracklets (one per row of clip_frames), got {len(tracklets)}"
        )
    if not len(nuisances):
        raise ValueError("nuisances: expected at least one annotation field")
    out = np.zeros(idx.shape[:2] + (len(nuisances),))
    for n, t in enumerate(tracklets):
        ann = getattr(t, "annotations", None)
        if ann is None:
            raise ValueError(
                f"tracklets[{n}] ({getattr(t, 'tid', '?')}): no per-frame annotations; "
                "nuisance labels need the synthetic benchmark's info/annotations.csv"
            )
        if idx[n].min() < 0 or idx[n].max() >= len(ann):
            raise ValueError(
                f"clip_frames[{n}]: frame indices {idx[n].min()}..{idx[n].max()} outside "
                f"the tracklet's {len(ann)} annotated frames"
            )
        for k, name in enumerate(nuisances):
            if name not in ann.dtype.names:
                raise ValueError(f"nuisances: {name!r} is not an annotation field; have {ann.dtype.names}")
            flags = np.asarray(ann[name], dtype=np.float64) > 0
            out[n, :, k] = flags[idx[n]].mean(axis=-1)
    return out


def clip_labels(fractions: np.ndarray, min_fraction: float = 0.5) -> np.ndarray:
    """A clip contains a nuisance if at least ``min_fraction`` of its frames carry it (module doc).

    Args:
        fractions: (..., K) fractions of :func:`clip_nuisance_fractions`.
        min_fraction: in (0, 1].

    Returns:
        bool array of the same shape.
    """
    if not 0.0 < float(min_fraction) <= 1.0:
        raise ValueError(f"min_fraction: expected a value in (0, 1], got {min_fraction}")
    f = np.asarray(fractions, dtype=np.float64)
    return f >= float(min_fraction) - 1e-12


def split_clip_labels(dataset, banks: dict, min_fraction: float = 0.5):
    """Nuisance labels of every query and gallery clip, or ``(None, None)`` without annotations.

    Real datasets (MARS, Duke, PRID) have no per-frame annotations; then only
    the ``corrupted`` label can be measured.

    Args:
        dataset: with ``.query`` / ``.gallery`` tracklets aligned with the banks.
        banks: ``{"query": FeatureBank, "gallery": FeatureBank, ...}`` (clip frame indices).
        min_fraction: see :func:`clip_labels`.

    Returns:
        ``(q_labels (Q, M, K), g_labels (G, M, K))`` bool arrays over
        :data:`NUISANCES`, or ``(None, None)``.
    """
    tracks = list(dataset.query) + list(dataset.gallery)
    if not tracks or any(getattr(t, "annotations", None) is None for t in tracks):
        return None, None
    return tuple(
        clip_labels(clip_nuisance_fractions(getattr(dataset, s), banks[s].indices), min_fraction)
        for s in ("query", "gallery")
    )


def sample_pairs(num_query: int, num_gallery: int, max_pairs: int | None = None, seed: int = 0) -> np.ndarray:
    """Query x gallery sequence pairs to measure, all or a seeded subsample (module doc).

    Returns:
        (P, 2) int64 array of (query index, gallery index), sorted.
    """
    Q, G = int(num_query), int(num_gallery)
    if Q < 1 or G < 1:
        raise ValueError(f"num_query, num_gallery: expected >= 1, got {num_query}, {num_gallery}")
    if max_pairs is None or int(max_pairs) >= Q * G:
        qq, gg = np.meshgrid(np.arange(Q), np.arange(G), indexing="ij")
        return np.stack([qq.ravel(), gg.ravel()], axis=1).astype(np.int64)
    if int(max_pairs) < 1:
        raise ValueError(f"max_pairs: expected >= 1 or None, got {max_pairs}")
    k = max(1, int(max_pairs) // Q)
    rng = np.random.default_rng([int(seed), 606])
    rows = [np.stack([np.full(k, q), np.sort(rng.choice(G, size=k, replace=False))], axis=1) for q in range(Q)]
    return np.concatenate(rows).astype(np.int64)


def _check_pairs(pairs, Q: int, G: int) -> np.ndarray:
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(
            f"pairs: expected a (P, 2) integer array of (query, gallery) indices, got shape {p.shape} dtype {p.dtype}"
        )
    if len(p) and (p[:, 0].min() < 0 or p[:, 0].max() >= Q or p[:, 1].min() < 0 or p[:, 1].max() >= G):
        raise ValueError(f"pairs: indices outside [0, {Q}) x [0, {G})")
    return p.astype(np.int64)


def _check_feats(x, name: str) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() != 3:
        raise ValueError(
            f"{name}: expected a tensor (N, M, D), got {tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}"
        )
    return x


# --------------------------------------------------------------------------- #
# (a) importance per clip pair
# --------------------------------------------------------------------------- #
@torch.no_grad()
def clip_pair_table(
    model,
    q_feats: torch.Tensor,
    g_feats: torch.Tensor,
    pairs,
    q_clip_frames=None,
    g_clip_frames=None,
    chunk: int = 1024,
    progress: bool = False,
) -> pd.DataFrame:
    """Importance, cosine and frames of every clip pair of the given sequence pairs.

    alpha comes from ``model.forward`` (the reference recurrence of Eqs. 1-2,
    eval mode; the model's training flag is restored), in visiting order
    t = i*M + j.

    Args:
        model: a trained ``LearnedClipAggregator``.
        q_feats: (Q, M, D); g_feats: (G, M, D) clip features.
        pairs: (P, 2) (query, gallery) indices.
        q_clip_frames, g_clip_frames: optional (Q, M, L) / (G, M, L) frame
            indices (``FeatureBank.indices``) to attach as tuples.
        chunk: sequence pairs per forward call (memory ~ chunk * M^2 * D floats).
        progress: tqdm bar.

    Returns:
        DataFrame, one row per clip pair (P * M^2 rows): ``q``, ``g``, ``i``,
        ``j``, ``t``, ``alpha``, ``alpha_rel`` (alpha / mean alpha of its
        sequence pair, module doc (c)), ``cos`` (clip-pair cosine),
        ``similarity`` (of the sequence pair, Eq. 4), and ``q_frames``,
        ``g_frames`` when the frame indices are given.
    """
    q_feats, g_feats = _check_feats(q_feats, "q_feats"), _check_feats(g_feats, "g_feats")
    p = _check_pairs(pairs, len(q_feats), len(g_feats))
    if int(chunk) < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    Mq, Mg = q_feats.shape[1], g_feats.shape[1]
    alphas, coss, sims = [], [], []
    was = model.training
    model.eval()
    try:
        for s in tqdm(range(0, len(p), int(chunk)), disable=not progress, leave=False, desc="importance"):
            blk = p[s : s + int(chunk)]
            fq, fg = q_feats[blk[:, 0]], g_feats[blk[:, 1]]
            sim, alpha = model(fq, fg)
            cos = torch.einsum("bid,bjd->bij", F.normalize(fq, dim=-1), F.normalize(fg, dim=-1))
            alphas.append(alpha.double())
            coss.append(cos.reshape(len(blk), -1).double())
            sims.append(sim.double())
    finally:
        model.train(was)
    T = Mq * Mg
    alpha = torch.cat(alphas).numpy() if alphas else np.zeros((0, T))
    cos = torch.cat(coss).numpy() if coss else np.zeros((0, T))
    sim = torch.cat(sims).numpy() if sims else np.zeros(0)
    rel = alpha / np.maximum(alpha.mean(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    t = np.tile(np.arange(T), len(p))
    df = pd.DataFrame(
        {
            "q": np.repeat(p[:, 0], T),
            "g": np.repeat(p[:, 1], T),
            "i": t // Mg,
            "j": t % Mg,
            "t": t,
            "alpha": alpha.ravel(),
            "alpha_rel": rel.ravel(),
            "cos": cos.ravel(),
            "similarity": np.repeat(sim, T),
        }
    )
    for name, frames, col, side in (
        ("q_clip_frames", q_clip_frames, "q", "i"),
        ("g_clip_frames", g_clip_frames, "g", "j"),
    ):
        if frames is None:
            continue
        fr = np.asarray(frames)
        if fr.ndim != 3 or fr.shape[:2] != ((len(q_feats), Mq) if col == "q" else (len(g_feats), Mg)):
            raise ValueError(f"{name}: expected an (N, M, L) array matching the features, got shape {fr.shape}")
        df[f"{col}_frames"] = [tuple(int(x) for x in fr[a, b]) for a, b in zip(df[col], df[side])]
    return df


@torch.no_grad()
def topt_columns(
    table: pd.DataFrame, topt_model, q_feats: torch.Tensor, g_feats: torch.Tensor, t_percent: float = 50.0
) -> pd.DataFrame:
    """Add the top-t% baseline's view of each clip pair (Eq. 9) to a :func:`clip_pair_table`.

    The selection is the model's own: a copy of the (top-t%-eval) model with
    ``t_percent`` set, in eval mode, and its ``forward`` weights (1/k on the
    k = ``top_t_count(t, M^2)`` selected pairs, 0 elsewhere).

    Args:
        table: rows of :func:`clip_pair_table` (all M^2 clip pairs of each
            sequence pair, in visiting order).
        topt_model: a ``TopTAggregator``.
        q_feats, g_feats: the features the table was computed on.
        t_percent: t in (0, 100].

    Returns:
        A copy of ``table`` with ``topt_cos`` (projected clip-pair cosine),
        ``topt_rank`` (its within-pair rank scaled to [0, 1], 1 = highest) and
        ``topt_selected`` (bool).
    """
    if not 0.0 < float(t_percent) <= 100.0:
        raise ValueError(f"t_percent: expected a value in (0, 100], got {t_percent}")
    q_feats, g_feats = _check_feats(q_feats, "q_feats"), _check_feats(g_feats, "g_feats")
    T = q_feats.shape[1] * g_feats.shape[1]
    if len(table) % T:
        raise ValueError(f"table: expected all {T} clip pairs of every sequence pair, got {len(table)} rows")
    seq = torch.from_numpy(np.array(table[["q", "g"]].to_numpy()[::T], dtype=np.int64))
    m = copy.deepcopy(topt_model).eval()
    m.t_percent = float(t_percent)
    with torch.no_grad():
        cos = m.pair_cosines(q_feats[seq[:, 0]], g_feats[seq[:, 1]])  # (P, T)
        _, w = m._aggregate(cos)  # the model's own selection (its forward pass)
    cos = cos.double()
    order = torch.argsort(torch.argsort(cos, dim=1), dim=1).double()  # 0 = lowest
    out = table.copy()
    out["topt_cos"] = cos.numpy().ravel()
    out["topt_rank"] = (order / max(1, T - 1)).numpy().ravel()
    out["topt_selected"] = (w > 0).numpy().ravel()
    return out


def pair_labels(table: pd.DataFrame, q_labels: np.ndarray, g_labels: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Label every clip pair: it contains X if its query or its gallery clip does.

    Args:
        table: rows with ``q``, ``g``, ``i``, ``j``.
        q_labels: (Q, M, K) bool per query clip; g_labels: (G, M, K).
        names: the K label names (columns added).

    Returns:
        A copy of ``table`` with one bool column per name.
    """
    ql, gl = np.asarray(q_labels, dtype=bool), np.asarray(g_labels, dtype=bool)
    if ql.ndim != 3 or gl.ndim != 3 or ql.shape[2] != len(names) or gl.shape[2] != len(names):
        raise ValueError(f"q_labels, g_labels: expected (N, M, {len(names)}) arrays, got {ql.shape}, {gl.shape}")
    q, g, i, j = (table[c].to_numpy() for c in ("q", "g", "i", "j"))
    if len(table) and (
        q.max() >= ql.shape[0] or g.max() >= gl.shape[0] or i.max() >= ql.shape[1] or j.max() >= gl.shape[1]
    ):
        raise ValueError("table: query/gallery/clip indices outside the label arrays")
    out = table.copy()
    for k, name in enumerate(names):
        out[name] = ql[q, i, k] | gl[g, j, k]
    return out


def choose_examples(
    S,
    q_pids,
    g_pids,
    q_camids=None,
    g_camids=None,
    queries=None,
    num_queries: int = 2,
    q_clip_labels: np.ndarray | None = None,
    g_clip_labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Illustrative sequence pairs for the Fig. 7-like figure: per query, a true match and a hard non-match.

    Per query: its best-scored true match (same identity, another camera, as
    in the evaluation protocol) and its best-scored non-match (different
    identity, junk pid -1 excluded) - the pair the batch-hard loss cares
    about and a "high similarity" example like the paper's.

    Query choice when ``queries`` is None: among the queries that have both,
    those whose clips (query clips + the chosen true match's clips) carry the
    most annotated nuisances (any label of ``*_clip_labels``), ties by index;
    without labels the first ``num_queries`` valid queries. This picks
    examples with something to show, as the paper's hand-picked ones do; it
    is illustration, the AUC measurement is the evidence.

    Args:
        S: (Q, G) similarities.
        q_pids, g_pids, q_camids, g_camids: identities and cameras.
        queries: explicit query indices.
        num_queries: how many queries when choosing.
        q_clip_labels, g_clip_labels: optional (N, M, K) bool clip labels.

    Returns:
        DataFrame: ``example``, ``q``, ``g``, ``kind`` (``"true match"`` /
        ``"hard non-match"``), ``similarity``, ``rank`` (1-based, among the
        gallery items the protocol keeps), ``q_pid``, ``g_pid``.
    """
    S = np.asarray(S, dtype=np.float64)
    qp, gp = np.asarray(q_pids), np.asarray(g_pids)
    if S.ndim != 2 or S.shape != (len(qp), len(gp)):
        raise ValueError(f"S: expected shape ({len(qp)}, {len(gp)}), got {S.shape}")
    qc = np.zeros(len(qp), int) if q_camids is None else np.asarray(q_camids)
    gc = np.ones(len(gp), int) if g_camids is None else np.asarray(g_camids)
    same = qp[:, None] == gp[None, :]
    keep = ~(same & (qc[:, None] == gc[None, :])) & (gp[None, :] != -1)
    match, non = same & keep, ~same & keep
    valid = np.flatnonzero(match.any(1) & non.any(1))
    best = lambda q, mask: int(np.flatnonzero(mask[q])[np.argmax(S[q, mask[q]])])  # noqa: E731
    if queries is None:
        if q_clip_labels is not None and g_clip_labels is not None:
            ql, gl = np.asarray(q_clip_labels, bool), np.asarray(g_clip_labels, bool)
            load = np.array([ql[q].any(-1).sum() + gl[best(q, match)].any(-1).sum() for q in valid])
            valid = valid[np.argsort(-load, kind="stable")]
        queries = valid[: int(num_queries)]
    rows = []
    for q in queries:
        q = int(q)
        if q not in set(valid.tolist()):
            raise ValueError(f"queries: query {q} has no valid true match and non-match in the gallery")
        order = np.argsort(-np.where(keep[q], S[q], -np.inf), kind="stable")
        rank = {int(g): r + 1 for r, g in enumerate(order[: int(keep[q].sum())])}
        for kind, mask in (("true match", match), ("hard non-match", non)):
            g = best(q, mask)
            rows.append(
                {
                    "example": len(rows),
                    "q": q,
                    "g": g,
                    "kind": kind,
                    "similarity": float(S[q, g]),
                    "rank": rank[g],
                    "q_pid": int(qp[q]),
                    "g_pid": int(gp[g]),
                }
            )
    return pd.DataFrame(rows)


def extreme_clip_pairs(table: pd.DataFrame, n: int = 2) -> pd.DataFrame:
    """The ``n`` highest- and ``n`` lowest-importance clip pairs of every sequence pair (Fig. 7 rows).

    Returns:
        Rows of ``table`` with a column ``which`` (``"highest"``/``"lowest"``)
        and ``order`` (0 = most extreme), highest first.
    """
    if int(n) < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    out = []
    for _, grp in table.groupby(["q", "g"], sort=False):
        srt = grp.sort_values("alpha", ascending=False, kind="stable")
        out.append(srt.head(int(n)).assign(which="highest", order=range(min(int(n), len(srt)))))
        out.append(srt.tail(int(n)).iloc[::-1].assign(which="lowest", order=range(min(int(n), len(srt)))))
    return pd.concat(out, ignore_index=True)


def extremes_vs_labels(table: pd.DataFrame, labels: Sequence[str], n: int = 2) -> pd.DataFrame:
    """Fig. 7's selection over the whole measurement: how often the n highest / n lowest clip pairs carry X.

    For every sequence pair, its ``n`` highest- and ``n`` lowest-alpha clip
    pairs (ties broken by visiting order), against all clip pairs.

    Args:
        table: clip pairs with ``q``, ``g``, ``alpha`` and bool label columns.
        labels: label columns.
        n: clip pairs at each end (2 in the paper's figure).

    Returns:
        DataFrame indexed by ``"n highest"``, ``"all clip pairs"``, ``"n lowest"``;
        columns: the labels (fraction of those clip pairs carrying it, in [0, 1])
        and ``clip pairs`` (how many).
    """
    if int(n) < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    missing = [lb for lb in list(labels) + ["alpha", "q", "g"] if lb not in table]
    if missing:
        raise ValueError(f"table: columns {missing} missing")
    grp = table.groupby(["q", "g"], sort=False)["alpha"]
    hi = grp.rank(method="first", ascending=False) <= int(n)
    lo = grp.rank(method="first", ascending=True) <= int(n)
    rows = {}
    for name, mask in ((f"{n} highest", hi), ("all clip pairs", np.ones(len(table), bool)), (f"{n} lowest", lo)):
        sub = table.loc[np.asarray(mask), list(labels)]
        rows[name] = dict(sub.mean().astype(float), **{"clip pairs": int(len(sub))})
    return pd.DataFrame(rows).T


# --------------------------------------------------------------------------- #
# (b) AUC with a cluster bootstrap
# --------------------------------------------------------------------------- #
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
    """The cluster decomposition of the Mann-Whitney count (module doc).

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


def _add_scores(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    out["low_learned"] = -out["alpha_rel"]
    if "t" in out:  # remove the systematic dependence on the visiting step (module doc)
        out["low_learned_step"] = -out["alpha_rel"] / out.groupby("t")["alpha_rel"].transform("mean")
    if "topt_selected" in out:
        out["low_topt_select"] = (~out["topt_selected"].astype(bool)).astype(float)
        out["low_topt_rank"] = -out["topt_rank"]
    return out


def importance_auc(
    table: pd.DataFrame,
    labels: Sequence[str],
    methods: Sequence[str] | None = None,
    num_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    return_replicates: bool = False,
):
    """ROC AUC of low importance for "this clip pair contains X", per method and label.

    Args:
        table: clip pairs with ``q`` (the cluster), ``alpha_rel`` (and the
            :func:`topt_columns` for the top-t% methods) and one bool column
            per label.
        labels: label columns.
        methods: keys of :data:`METHODS` (default: all the table supports).
        num_boot, level, seed: bootstrap (:func:`cluster_bootstrap_auc`); the
            same replicates (same clusters drawn) for every method and label,
            so differences between methods can be bootstrapped pairwise
            (:func:`compare_methods`).
        return_replicates: also return ``{(method, label): (num_boot,) array}``.

    Returns:
        Tidy DataFrame, one row per (method, label): ``method``,
        ``method_label``, ``nuisance``, ``auc``, ``lo``, ``hi``, ``n_pos``,
        ``n_neg``, ``prevalence``, ``clusters``, ``boot_valid``.
    """
    df = _add_scores(table)
    if methods is None:
        methods = [m for m, (_, col) in METHODS.items() if col in df]
    for m in methods:
        if m not in METHODS or METHODS[m][1] not in df:
            raise ValueError(f"methods: {m!r} unknown or its columns missing from table (known: {list(METHODS)})")
    missing = [lb for lb in labels if lb not in df]
    if missing:
        raise ValueError(f"labels: columns {missing} not in table")
    clusters = df["q"].to_numpy()
    rows, reps = [], {}
    for m in methods:
        label, col = METHODS[m]
        sc = df[col].to_numpy()
        for lb in labels:
            r = cluster_bootstrap_auc(
                sc, df[lb].to_numpy(bool), clusters, num_boot, level, seed, return_replicates=True
            )
            reps[(m, lb)] = r.pop("replicates")
            rows.append(
                {
                    "method": m,
                    "method_label": label,
                    "nuisance": lb,
                    **r,
                    "prevalence": r["n_pos"] / max(1, r["n_pos"] + r["n_neg"]),
                }
            )
    out = pd.DataFrame(rows)
    return (out, reps) if return_replicates else out


def compare_methods(
    auc: pd.DataFrame, replicates: dict, a: str = "learned", b: str = "topt-select", level: float = 0.95
) -> pd.DataFrame:
    """Paired bootstrap of AUC(a) - AUC(b) per label (same resampled clusters for both).

    Returns:
        DataFrame indexed by label: ``diff``, ``lo``, ``hi``.
    """
    rows = {}
    for lb in auc["nuisance"].unique():
        if (a, lb) not in replicates or (b, lb) not in replicates:
            raise ValueError(f"replicates: need both {a!r} and {b!r} for {lb!r}")
        pa = auc[(auc["method"] == a) & (auc["nuisance"] == lb)]["auc"].iloc[0]
        pb = auc[(auc["method"] == b) & (auc["nuisance"] == lb)]["auc"].iloc[0]
        d = replicates[(a, lb)] - replicates[(b, lb)]
        d = d[np.isfinite(d)]
        q = (1.0 - level) / 2.0
        lo, hi = np.quantile(d, [q, 1 - q]) if len(d) else (np.nan, np.nan)
        rows[lb] = {"diff": pa - pb, "lo": float(lo), "hi": float(hi)}
    out = pd.DataFrame(rows).T
    out.index.name = f"AUC({a}) - AUC({b})"
    return out


# --------------------------------------------------------------------------- #
# the measurement on the benchmark
# --------------------------------------------------------------------------- #
def default_level(cfg) -> int:
    """A middle corruption level: the largest M_c^max <= M/2 of the profile, else its smallest > 0.

    Clean and corrupted clip pairs are then both common.
    """
    levels = sorted(int(x) for x in cfg.agg.max_corrupted if int(x) > 0)
    if not levels:
        raise ValueError("cfg.agg.max_corrupted: no level > 0 to measure the corrupted label at")
    mid = [lv for lv in levels if lv <= cfg.agg.num_clips // 2]
    return mid[-1] if mid else levels[0]


def learned_at_level(
    cfg, clean: dict, corrupted: dict | None, level: int, progress: bool = True, num_threads: int | None = 1
) -> dict:
    """The learned aggregator of one level, its test features and its (Q, G) similarity matrix.

    The model comes from ``experiments_agg.get_aggregator`` (cache or trained
    now); the similarities (``similarity_matrix``, fast eval path) are cached
    under a key of the model and the test banks.

    Returns:
        dict ``model``, ``q_feats``, ``g_feats`` (the level's test features)
        and ``S`` ((Q, G) float64 numpy array).
    """
    from reid_utils.cache import ArtifactCache
    from reid_utils.config import config_key
    from reid_utils.experiments import corruption_sweep as E

    level = int(level)
    model, info = E.get_aggregator(
        cfg, E.Method("learned"), level, clean, corrupted, progress=progress, num_threads=num_threads
    )
    qf = E.level_features(cfg, clean, corrupted, "query", level)
    gf = E.level_features(cfg, clean, corrupted, "gallery", level)
    spec = {
        "model": info["key"],
        "level": level,
        "seed": int(cfg.seed),
        "banks": [clean[s].meta.get("key") for s in ("query", "gallery")],
        "corrupted": (
            [corrupted[s].meta.get("key") for s in ("query", "gallery")] if level and corrupted is not None else None
        ),
    }

    def compute():
        with E.torch_threads(num_threads):
            return model.similarity_matrix(qf, gf, progress=progress)

    S = ArtifactCache(cfg.cache_root).get_or_compute("agg-similarity", config_key(spec), compute, verbose=progress)
    return {"model": model, "q_feats": qf, "g_feats": gf, "S": S.double().numpy()}


def measure(
    cfg,
    dataset,
    clean: dict,
    corrupted: dict | None,
    level: int,
    t_percent: float = 50.0,
    max_pairs: int | None = 4000,
    min_fraction: float = 0.5,
    num_boot: int = 1000,
    seed: int | None = None,
    progress: bool = True,
    num_threads: int | None = 1,
) -> dict:
    """Importance vs nuisance on the test set at one corruption level (module doc (b)).

    Models: the learned and the top-t%-eval aggregators trained at ``level``
    (``experiments_agg.get_aggregator``: cache or trained now); features: the
    level's test features (``experiments_agg.level_features``, the fixed
    corrupted test plan for ``level > 0``).

    Args:
        cfg: ``Config``.
        dataset: with ``.query``/``.gallery`` tracklets aligned with the banks
            (their annotations give the nuisance labels; without annotations
            only ``corrupted`` is measured).
        clean, corrupted: banks of ``experiments_agg.clip_banks``.
        level: M_c^max.
        t_percent: t of the top-t% selection.
        max_pairs: sequence pairs measured (:func:`sample_pairs`; None: all).
        min_fraction: see :func:`clip_labels`.
        num_boot: bootstrap replicates.
        seed: pair subsampling and bootstrap seed (default ``cfg.seed``).
        progress: tqdm bars.
        num_threads: torch CPU threads (``experiments_agg.torch_threads``).

    Returns:
        dict: ``table`` (clip pairs with scores and labels), ``auc`` (tidy,
        with a ``level`` column), ``compare`` (learned minus top-t% selection,
        paired bootstrap), ``labels`` (measured label names), ``pairs``
        (sequence pairs measured).
    """
    from reid_utils.experiments import corruption_sweep as E

    seed = int(cfg.seed if seed is None else seed)
    level = int(level)
    learned, _ = E.get_aggregator(
        cfg, E.Method("learned"), level, clean, corrupted, progress=progress, num_threads=num_threads
    )
    topt, _ = E.get_aggregator(
        cfg, E.Method("topt-eval"), level, clean, corrupted, progress=progress, num_threads=num_threads
    )
    qf = E.level_features(cfg, clean, corrupted, "query", level)
    gf = E.level_features(cfg, clean, corrupted, "gallery", level)
    qb, gb = clean["query"], clean["gallery"]
    pairs = sample_pairs(len(qf), len(gf), max_pairs, seed)
    with E.torch_threads(num_threads):
        table = clip_pair_table(learned, qf, gf, pairs, progress=progress)
        table = topt_columns(table, topt, qf, gf, t_percent)
    names, ql, gl = [], [], []
    q_nui, g_nui = split_clip_labels(dataset, clean, min_fraction)
    if q_nui is not None:
        names += list(NUISANCES)
        ql.append(q_nui)
        gl.append(g_nui)
    names.append(CORRUPTED)
    if level > 0:
        ql.append(E.test_plan(cfg, "query", len(qf), level)[..., None])
        gl.append(E.test_plan(cfg, "gallery", len(gf), level)[..., None])
    else:
        ql.append(np.zeros(qf.shape[:2] + (1,), bool))
        gl.append(np.zeros(gf.shape[:2] + (1,), bool))
    table = pair_labels(table, np.concatenate(ql, -1), np.concatenate(gl, -1), names)
    table["same"] = qb.pids[table["q"].to_numpy()] == gb.pids[table["g"].to_numpy()]
    auc, reps = importance_auc(table, names, num_boot=num_boot, seed=seed, return_replicates=True)
    auc.insert(0, "level", level)
    auc["t_percent"] = float(t_percent)
    cmp = compare_methods(auc, reps, "learned", "topt-select")
    return {"table": table, "auc": auc, "compare": cmp, "labels": names, "pairs": pairs}


def describe_auc(
    auc: pd.DataFrame, compare: pd.DataFrame | None = None, method: str = "learned", baseline: str = "topt-select"
) -> str:
    """Plain words, computed from the numbers: where low importance does and does not go to nuisances.

    A label is *above* 0.5 when its interval's lower end is above 0.5,
    *below* when the upper end is below, else *indistinguishable from 0.5*.

    Args:
        auc: :func:`importance_auc` rows (one level; a ``level`` column is used when present).
        compare: optional :func:`compare_methods` table (method minus baseline).

    Returns:
        Markdown text.
    """
    sub = auc[auc["method"] == method]
    base = auc[auc["method"] == baseline].set_index("nuisance")
    step = auc[auc["method"] == "learned-step"].set_index("nuisance") if method == "learned" else None
    if step is not None and step.empty:
        step = None
    if sub.empty:
        raise ValueError(f"auc: no rows for method {method!r}")
    lvl = f" at $M_c^{{max}}$ = {int(sub['level'].iloc[0])}" if "level" in sub else ""
    lines, groups = [], {"above": [], "below": [], "chance": []}
    for _, r in sub.iterrows():
        n = r["nuisance"].replace("_", " ")
        if not np.isfinite(r["auc"]):
            lines.append(f"- **{n}**: no clip pair carries it here ({r['n_pos']} positives), AUC undefined.")
            continue
        if np.isfinite(r["lo"]) and r["lo"] > 0.5:
            verdict, key = "above 0.5: pairs with it do get lower importance", "above"
        elif np.isfinite(r["hi"]) and r["hi"] < 0.5:
            verdict, key = "below 0.5: pairs with it get *higher* importance", "below"
        else:
            verdict, key = "indistinguishable from 0.5", "chance"
        groups[key].append(n)
        txt = (
            f"- **{n}** ({r['n_pos']} of {r['n_pos'] + r['n_neg']} clip pairs): AUC {r['auc']:.2f}, "
            f"95 % interval [{r['lo']:.2f}, {r['hi']:.2f}], {verdict}"
        )
        if r["nuisance"] in base.index and np.isfinite(base.loc[r["nuisance"], "auc"]):
            if step is not None and r["nuisance"] in step.index:
                txt += f" (step-adjusted: {step.loc[r['nuisance'], 'auc']:.2f})"
            txt += f"; the top-t% selection: {base.loc[r['nuisance'], 'auc']:.2f}"
            if compare is not None and r["nuisance"] in compare.index:
                c = compare.loc[r["nuisance"]]
                side = "higher" if c["lo"] > 0 else "lower" if c["hi"] < 0 else "not distinguishable"
                txt += f" (learned minus top-t%: {c['diff']:+.2f}, [{c['lo']:+.2f}, {c['hi']:+.2f}]: {side})"
        lines.append(txt + ".")
    fmt = lambda xs: ", ".join(xs) if xs else "none"  # noqa: E731
    head = (
        f"Learned importance{lvl} (AUC of low importance, 95 % cluster-bootstrap intervals). "
        f"Low importance **does** go to clip pairs with: {fmt(groups['above'])}. "
        f"Indistinguishable from chance for: {fmt(groups['chance'])}. "
        f"The **opposite** (such pairs get higher importance) for: {fmt(groups['below'])}."
    )
    return head + "\n\n" + "\n".join(lines)
