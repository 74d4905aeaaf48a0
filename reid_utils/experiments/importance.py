"""Importance per clip pair (Sec. 3.1, Eqs. 1-4) and the examples of Fig. 7.

The learned aggregator gives every clip pair t = i*M + j of a query x gallery
sequence pair an importance alpha_t = g(r_{t-1} - c_t) (Eq. 1), and scores the
pair by s = sum_t alpha_t cos_t / sum_t alpha_t (Eq. 3). The paper's Fig. 7
shows, for four hand-picked sequence pairs, the two highest- and two
lowest-importance clip pairs and argues that low importance goes to occluded,
empty, mis-tracked or badly cropped clips. Here: the per-clip-pair table
(:func:`clip_pair_table`, with the top-t% baseline's view of the same pairs,
Eq. 9: :func:`topt_columns`), the choice of illustrative sequence pairs
(:func:`choose_examples`), their extreme clip pairs
(:func:`extreme_clip_pairs`) and how often the extremes carry a nuisance
(:func:`extremes_vs_labels`). The measurement over the whole test set is
``reid_utils.experiments.importance_vs_nuisance``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = ["clip_pair_table", "topt_columns", "choose_examples", "extreme_clip_pairs", "extremes_vs_labels"]


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
    t = i*M + j. alpha is only meaningful relative to the other M^2 pairs of
    the same sequence pair (Eq. 3 divides by their sum; an overall scale of g
    cancels), so ``alpha_rel`` divides it by the mean alpha of its sequence
    pair (1 = uniform weight) before clip pairs of different sequence pairs
    are pooled.

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
        sequence pair), ``cos`` (clip-pair cosine),
        ``similarity`` (of the sequence pair, Eq. 4), and ``q_frames``,
        ``g_frames`` when the frame indices are given.
    """
    q_feats, g_feats = _check_feats(q_feats, "q_feats"), _check_feats(g_feats, "g_feats")
    p = _check_pairs(pairs, len(q_feats), len(g_feats))
    if int(chunk) < 1:
        raise ValueError(f"chunk: expected >= 1, got {chunk}")
    Mq, Mg = q_feats.shape[1], g_feats.shape[1]
    T = Mq * Mg
    alpha, cos, sim = _forward_pairs(model, q_feats, g_feats, p, int(chunk), progress)
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
    for name, frames, col, side, n, m in (
        ("q_clip_frames", q_clip_frames, "q", "i", len(q_feats), Mq),
        ("g_clip_frames", g_clip_frames, "g", "j", len(g_feats), Mg),
    ):
        if frames is not None:
            _attach_frames(df, name, frames, col, side, (n, m))
    return df


def _forward_pairs(model, q_feats, g_feats, p: np.ndarray, chunk: int, progress: bool) -> tuple:
    """alpha (P, T), clip-pair cosines (P, T) and similarities (P,) of the sequence pairs ``p``, float64 numpy.

    ``model.forward`` in eval mode, ``chunk`` sequence pairs at a time; the
    model's training flag is restored.
    """
    T = q_feats.shape[1] * g_feats.shape[1]
    alphas, coss, sims = [], [], []
    was = model.training
    model.eval()
    try:
        for s in tqdm(range(0, len(p), chunk), disable=not progress, leave=False, desc="importance"):
            blk = p[s : s + chunk]
            fq, fg = q_feats[blk[:, 0]], g_feats[blk[:, 1]]
            sim, alpha = model(fq, fg)
            cos = torch.einsum("bid,bjd->bij", F.normalize(fq, dim=-1), F.normalize(fg, dim=-1))
            alphas.append(alpha.double())
            coss.append(cos.reshape(len(blk), -1).double())
            sims.append(sim.double())
    finally:
        model.train(was)
    alpha = torch.cat(alphas).numpy() if alphas else np.zeros((0, T))
    cos = torch.cat(coss).numpy() if coss else np.zeros((0, T))
    sim = torch.cat(sims).numpy() if sims else np.zeros(0)
    return alpha, cos, sim


def _attach_frames(df: pd.DataFrame, name: str, frames, col: str, side: str, shape: tuple) -> None:
    """Add ``<col>_frames``: the frame indices (tuples) of each row's clip, ``frames[df[col], df[side]]``."""
    fr = np.asarray(frames)
    if fr.ndim != 3 or fr.shape[:2] != shape:
        raise ValueError(f"{name}: expected an (N, M, L) array matching the features, got shape {fr.shape}")
    df[f"{col}_frames"] = [tuple(int(x) for x in fr[a, b]) for a, b in zip(df[col], df[side])]


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
