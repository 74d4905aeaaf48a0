"""Shortlist scoring: mean-feature ranking first, the learned aggregator on the top K only.

The learned clip similarity aggregation (Sec. 3.1, Eqs. 1-4) costs M^2 sequential steps
of the importance network per (query, gallery) pair (about 0.27 GFLOP at D = hidden =
1024, M = 8; ~5 PFLOP for MARS's 1,980 x 9,330 pairs). The averaged-feature similarity of
Sec. 4.3 (cosine between the means of the L2-normalised clip features, Fig. 4) costs one
matrix product for the whole gallery. A standard two-stage retrieval combines them
(:func:`shortlist_similarity`):

1. rank the whole gallery of each query by the mean-feature cosine (ties by gallery
   index, so the shortlist is deterministic);
2. rescore only the top K of each query with the learned aggregator, with the same
   eval-mode function as the full scoring (``model.similarity_matrix``: the folded fast
   path on the CPU, the fused kernel on CUDA), vectorised over groups of queries;
3. return a full (Q, G) similarity matrix in which every shortlisted entry holds its
   learned similarity and every other entry ranks strictly below all shortlisted ones of
   its query while keeping the mean-feature order.

``reid_utils.experiments.scoring_at_scale.shortlist_sweep`` measures mAP, rank-1 and the
scoring wall time for a list of K on a profile's benchmark.
"""

from __future__ import annotations

import torch

from reid_utils.models.aggregation import MeanFeatureAggregator

__all__ = ["mean_feature_similarity", "check_k", "shortlist_indices", "shortlist_similarity"]


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


def check_k(k, G: int, who: str) -> int:
    """``k`` as an int, checked to be a shortlist length in [1, G]; ``who`` names the caller."""
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
    k = check_k(k, coarse.shape[1], "shortlist_indices")
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
        max_waste: consecutive queries whose shortlists overlap are scored together
            against the union of their shortlists (:func:`_query_groups`) so that a
            group's scored pairs are at most this many times its shortlisted ones,
            except that groups of at most ``min_pairs`` scored pairs are always
            merged (the fixed cost of a call dominates there).
        progress: tqdm bar over the chunks.

    Returns:
        (Q, G) float similarities: learned scores on the shortlist, and below them the
        mean-feature order. Both scores lie in [-1, 1] (Eq. 3 is an alpha-weighted mean of
        cosines), so for query q with lowest shortlisted learned score L_q a
        non-shortlisted item j gets ``L_q - 2 + m_qj`` (m: its mean-feature cosine,
        clamped to [-1, 1]) <= L_q - 1. The shortlist is taken over the whole gallery as
        given: protocol "junk" (same identity and camera) is removed later by the
        evaluation and may take shortlist slots, as in any deployed system.
    """
    from tqdm.auto import tqdm

    who = "shortlist_similarity"
    _check_banks(q, g, who)
    Q, G = q.shape[0], g.shape[0]
    k = check_k(k, G, who)
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
        e = s + 1
        while e < Q:
            new = mask.clone()
            new[idx[e]] = True
            m = int(new.sum())
            n_pairs = (e + 1 - s) * m
            if n_pairs > max_pairs or (m > max_waste * k and n_pairs > min_pairs):
                break
            mask, e = new, e + 1
        groups.append((s, e, mask.nonzero().flatten()))
        s = e
    return groups
