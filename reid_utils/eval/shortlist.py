"""Shortlist scoring: mean-feature ranking first, the learned aggregator on the top K only.

The learned clip similarity aggregation (Sec. 3.1, Eqs. 1-4) costs M^2
sequential steps of the importance network per (query, gallery) pair (about
0.27 GFLOP at D = hidden = 1024, M = 8; ~5 PFLOP for MARS's 1,980 x 9,330
pairs). The averaged-feature similarity of Sec. 4.3 (cosine between the means
of the L2-normalised clip features, Fig. 4) costs one matrix product for the
whole gallery. A standard two-stage retrieval combines them:

1. rank the whole gallery of each query by the mean-feature cosine;
2. rescore only the top K of each query with the learned aggregator
   with the same eval-mode function as the full scoring
   (``model.similarity_matrix``: the folded fast path on the CPU, the fused
   kernel on CUDA), vectorised over groups of queries: consecutive queries
   whose shortlists overlap are scored together against the union U of their
   shortlists (group pairs <= ``max_pairs``, so memory stays bounded, and
   |U| <= ``max_waste`` * K unless the group is tiny, <= ``min_pairs`` pairs);
3. return a full (Q, G) similarity matrix in which every shortlisted entry
   holds its learned similarity and every other entry ranks strictly below
   all shortlisted ones of its query while keeping the mean-feature order.

How the non-shortlisted entries are placed: the learned similarity (Eq. 3) is
an alpha-weighted mean of clip-pair cosines and the mean-feature score is a
cosine, so both lie in [-1, 1]. For query q with lowest shortlisted learned
score L_q, a non-shortlisted gallery item j gets ``L_q - 2 + m_qj`` (m: its
mean-feature cosine, clamped to [-1, 1]), which is at most ``L_q - 1``:
strictly below every shortlisted entry by at least 1, and ordered among
themselves as by the mean feature. Distances for ``evaluate_rank`` are the
negated similarities as usual.

Ties in the mean-feature score are broken by gallery index (stable sort), so
the shortlist is deterministic. The shortlist is taken over the whole gallery
as given; protocol "junk" (same identity and camera) is removed later by the
evaluation and may take shortlist slots, as it would in any deployed system.

:func:`shortlist_sweep` measures mAP, rank-1 and the scoring wall time for a
list of K on a profile's benchmark, with the mean-feature ranking (K = 0) and
the full learned scoring (K = G) as the two ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import pandas as pd
import torch

from reid_utils.models.aggregation import MeanFeatureAggregator

__all__ = ["mean_feature_similarity", "shortlist_indices", "shortlist_similarity", "shortlist_sweep", "recommend_k"]


def _check_banks(q, g, who: str) -> None:
    for name, x in (("q", q), ("g", g)):
        if not torch.is_tensor(x) or x.dim() != 3:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{who}: {name} must be a tensor of shape (N, M, D), got {shape}")
    if q.shape[-1] != g.shape[-1]:
        raise ValueError(f"{who}: q and g must have the same feature dimension D, got {q.shape[-1]} and {g.shape[-1]}")


def mean_feature_similarity(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Cosine of the means of the L2-normalised clip features (Sec. 4.3), one matrix product.

    Args:
        q: (Q, Mq, D); g: (G, Mg, D) clip features.

    Returns:
        (Q, G) cosines in [-1, 1].
    """
    _check_banks(q, g, "mean_feature_similarity")
    agg = MeanFeatureAggregator(q.shape[-1], normalize=True)
    return agg.similarity_matrix(q, g, chunk=max(1, q.shape[0] * g.shape[0]), progress=False)


def _check_k(k, G: int, who: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int) and not (hasattr(k, "__index__")):
        raise ValueError(f"{who}: k must be an integer in [1, {G}] (the gallery size), got {k!r}")
    k = int(k)
    if not 1 <= k <= G:
        raise ValueError(f"{who}: k must be in [1, {G}] (the gallery size), got {k}")
    return k


def shortlist_indices(coarse: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k gallery indices per query by a coarse similarity, ties by gallery index.

    Args:
        coarse: (Q, G) similarities.
        k: shortlist length, 1 <= k <= G.

    Returns:
        (Q, k) long indices, best first.
    """
    k = _check_k(k, coarse.shape[1], "shortlist_indices")
    return torch.sort(coarse, dim=1, descending=True, stable=True).indices[:, :k]


@torch.no_grad()
def shortlist_similarity(
    model,
    q: torch.Tensor,
    g: torch.Tensor,
    k: int,
    *,
    coarse: torch.Tensor | None = None,
    max_pairs: int = 4096,
    max_waste: float = 2.0,
    min_pairs: int = 128,
    progress: bool = False,
) -> torch.Tensor:
    """(Q, G) similarities: the learned aggregator on each query's mean-feature top k.

    Args:
        model: a trained aggregator with ``similarity_matrix(q, g)`` (normally
            ``LearnedClipAggregator``; eval-mode scores, on CUDA its fused kernel).
        q: (Q, Mq, D) query clip features; g: (G, Mg, D) gallery clip features.
        k: shortlist length per query, 1 <= k <= G (G: the full learned scoring's ranking).
        coarse: (Q, G) first-stage similarities; default :func:`mean_feature_similarity`.
        max_pairs: most pairs scored per ``similarity_matrix`` call (and its chunk).
        max_waste: queries are grouped (see :func:`_query_groups`) so that a
            group's scored pairs are at most this many times its shortlisted ones,
            except that groups of at most ``min_pairs`` scored pairs are always
            merged (the fixed cost of a call dominates there).
        progress: tqdm bar over the chunks.

    Returns:
        (Q, G) float similarities: learned scores on the shortlist, and below
        them (see the module doc) the mean-feature order.
    """
    from tqdm.auto import tqdm

    who = "shortlist_similarity"
    _check_banks(q, g, who)
    Q, G = q.shape[0], g.shape[0]
    k = _check_k(k, G, who)
    if int(max_pairs) < 1:
        raise ValueError(f"{who}: max_pairs must be >= 1, got {max_pairs}")
    if coarse is None:
        coarse = mean_feature_similarity(q, g)
    elif tuple(coarse.shape) != (Q, G):
        raise ValueError(f"{who}: coarse must have shape ({Q}, {G}), got {tuple(coarse.shape)}")
    idx = shortlist_indices(coarse, k).cpu()  # (Q, k)
    learned = torch.empty(Q, k, dtype=torch.float32)
    groups = _query_groups(idx, G, int(max_pairs), float(max_waste), int(min_pairs))
    pos = torch.empty(G, dtype=torch.long)
    for s, e, union in tqdm(groups, disable=not progress, leave=False, desc="shortlist rescoring"):
        S = model.similarity_matrix(q[s:e], g[union], chunk=int(max_pairs), progress=False)
        pos[union] = torch.arange(len(union))
        learned[s:e] = S.float().cpu().gather(1, pos[idx[s:e]])
    m = coarse.detach().float().cpu().clamp(-1.0, 1.0)
    low = learned.min(dim=1, keepdim=True).values  # L_q
    out = low - 2.0 + m  # <= L_q - 1 everywhere
    out.scatter_(1, idx.cpu(), learned)
    return out.to(q.device)


def _query_groups(idx: torch.Tensor, G: int, max_pairs: int, max_waste: float, min_pairs: int = 0) -> list:
    """Greedy groups of consecutive queries scored together against their shortlists' union.

    A group [s, e) with union U of its rows of ``idx`` (Q, k) is extended while
    (e - s) * |U| <= max_pairs and either |U| <= max_waste * k or
    (e - s) * |U| <= min_pairs (tiny groups are merged anyway: one call's
    fixed cost is worth more than scoring a few extra pairs). A single query
    always forms a group.

    Returns:
        list of (s, e, U) with U a sorted (|U|,) long tensor of gallery indices.
    """
    Q, k = idx.shape
    if max_pairs < 1 or max_waste < 1.0:
        raise ValueError(f"shortlist: max_pairs must be >= 1 and max_waste >= 1, got {max_pairs}, {max_waste}")
    groups, s = [], 0
    while s < Q:
        mask = torch.zeros(G, dtype=torch.bool)
        mask[idx[s]] = True
        n, e = int(mask.sum()), s + 1
        while e < Q:
            new = mask.clone()
            new[idx[e]] = True
            m = int(new.sum())
            n_pairs = (e + 1 - s) * m
            if n_pairs > max_pairs or (m > max_waste * k and n_pairs > min_pairs):
                break
            mask, n, e = new, m, e + 1
        groups.append((s, e, mask.nonzero().flatten()))
        s = e
    return groups


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
    cfg, ks: Iterable[int], *, dataset=None, repeats: int = 1, progress: bool = False, num_threads: int | None = 1
) -> pd.DataFrame:
    """mAP, rank-1 and scoring time vs shortlist length K on a profile's benchmark.

    Uses the clean clip banks and the learned aggregator trained at
    M_c^max = 0 (``experiments_agg``: ``get_backbone``, ``clip_banks``,
    ``get_aggregator``; trained now if not cached).

    Args:
        cfg: ``Config`` of the profile.
        ks: shortlist lengths (each in [1, G]; values > G are rejected).
        dataset: the profile's dataset (default ``datasets.load_dataset_for_config(cfg)``).
        repeats: timings are the best of this many runs.
        progress: bars and cache messages while building prerequisites.
        num_threads: torch CPU threads while scoring (``experiments_agg.torch_threads``).

    Returns:
        DataFrame, one row per setting, ordered by K: ``mode`` (``mean-feature``
        = K 0, ``shortlist``, ``full`` = the learned aggregator on all G),
        ``K``, ``pairs_rescored`` (Q*K), ``mAP``, ``rank1`` (in [0, 1]),
        ``seconds`` (scoring wall time, ranking/evaluation excluded; the
        shortlist rows include their mean-feature stage) and ``time_vs_full``.
    """
    from reid_utils.data.datasets import load_dataset_for_config
    from reid_utils.experiments import corruption_sweep as E

    ks = [int(k) for k in ks]
    ds = dataset if dataset is not None else load_dataset_for_config(cfg)
    clean = E.clip_banks(cfg, E.get_backbone(cfg, ds, progress=progress), ds, progress=progress)
    model, _ = E.get_aggregator(cfg, E.Method("learned"), 0, clean, progress=progress)
    qb, gb = clean["query"], clean["gallery"]
    Q, G = qb.feats.shape[0], gb.feats.shape[0]
    for k in ks:
        _check_k(k, G, "shortlist_sweep")
    model = E.scoring_model(cfg, model)  # on CUDA: the fused kernel
    q, g = qb.feats.to(cfg.torch_device()), gb.feats.to(cfg.torch_device())
    protocol = E.dataset_protocol(ds)
    rows = []

    def add(mode, k, seconds, S):
        r = E.evaluate_similarity(S.cpu(), qb, gb, protocol)
        rows.append(
            {
                "mode": mode,
                "K": int(k),
                "pairs_rescored": int(Q * k),
                "mAP": r["mAP"],
                "rank1": r["rank1"],
                "seconds": seconds,
            }
        )

    with E.torch_threads(num_threads):
        t, S = _best_time(lambda: mean_feature_similarity(q, g), repeats)
        add("mean-feature", 0, t, S)
        for k in sorted(set(ks)):
            if k == G:
                continue  # the full scoring's row below
            t, S = _best_time(lambda: shortlist_similarity(model, q, g, k), repeats)
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
        ``{"K", "metric", "value", "full", "seconds", "full_seconds", "speedup"}`` for
        that K (the full scoring itself, K = G, when no shortlist qualifies).
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
