"""Training losses (Sec. 3.2 of Matiyali & Sharma, WACV 2020).

* :func:`batch_hard_triplet` - the hard-mining ("batch-hard") triplet loss of
  Eq. 7 (Hermans et al. 2017) on a precomputed (N, N) distance matrix.
* :func:`batch_hard_triplet_similarity` - the same loss on a similarity
  matrix, with "the euclidean distances replaced by negative clip
  similarities" (Sec. 3.2, training of the clip-similarity aggregation module).
* :func:`softmax_ce` - the softmax cross-entropy of Eq. 8.
* :func:`pairwise_euclidean` - d(x1, x2) = ||x1 - x2||_2 of Eq. 7 for a batch,
  with a finite gradient on the zero diagonal (training); evaluation-time
  distances are ``reid_utils.eval.distances.euclidean_distance``.

Choices where the paper is silent or ambiguous (documented here once):

* **Reduction.** Eq. 7 and Eq. 8 *sum* over the P*K anchors. We default to the
  *mean* over anchors (``reduction="mean"``), the common practice, which keeps
  the learning rate independent of the batch size; ``reduction="sum"`` gives
  the paper's literal form (the two differ by the constant factor P*K).
* **Hardest positive.** Eq. 7 takes the max over p = 1..K, which includes the
  anchor itself (distance 0, or similarity 1 after negation); we keep it: it
  never changes the max unless every other positive is at distance 0, and it
  keeps the loss defined when an identity has a single sample in the batch.
* **Hardest negative.** The min over all samples with a different label; an
  anchor without any negative in the batch is an error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "pairwise_euclidean",
    "batch_hard_triplet",
    "batch_hard_triplet_similarity",
    "softmax_ce",
]

_REDUCTIONS = ("mean", "sum", "none")


def pairwise_euclidean(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """All pairwise Euclidean distances of a batch of vectors.

    Computed as sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, eps)), so the square root
    never sees 0 and the gradient stays finite on the diagonal.

    Args:
        x: (N, D) features.
        eps: lower clamp of the squared distance.

    Returns:
        (N, N) distances; the diagonal is ~sqrt(eps) rather than exactly 0.
    """
    if x.dim() != 2:
        raise ValueError(f"pairwise_euclidean: x must have shape (N, D), got {tuple(x.shape)}")
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(eps).sqrt()


def _check(dist: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError(f"batch_hard_triplet: dist must be a square (N, N) matrix, got {tuple(dist.shape)}")
    labels = torch.as_tensor(labels, device=dist.device)
    if labels.dim() != 1 or labels.shape[0] != dist.shape[0]:
        raise ValueError(f"batch_hard_triplet: labels must have shape ({dist.shape[0]},), got {tuple(labels.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"batch_hard_triplet: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return labels


def batch_hard_triplet(
    dist: torch.Tensor, labels: torch.Tensor, margin: float, reduction: str = "mean"
) -> torch.Tensor:
    """Batch-hard triplet loss, Eq. 7.

    For each anchor a: ``[m + max_{p: y_p = y_a} d(a, p) - min_{n: y_n != y_a} d(a, n)]_+``.

    Args:
        dist: (N, N) distances between the N batch samples (row = anchor).
        labels: (N,) integer identity labels.
        margin: m, the triplet margin.
        reduction: ``"mean"`` over anchors (default), ``"sum"`` (the paper's
            literal Eq. 7) or ``"none"`` (the (N,) per-anchor losses).

    Returns:
        Scalar loss (or (N,) with ``reduction="none"``).

    Raises:
        ValueError: on bad shapes, or when some anchor has no negative.
    """
    labels = _check(dist, labels, reduction)
    same = labels[:, None] == labels[None, :]
    if bool(same.all(dim=1).any()):
        raise ValueError(
            "batch_hard_triplet: some anchor has no negative in the batch (labels must contain at least two identities)"
        )
    hardest_pos = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
    losses = F.relu(margin + hardest_pos - hardest_neg)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def batch_hard_triplet_similarity(
    sim: torch.Tensor, labels: torch.Tensor, margin: float, reduction: str = "mean"
) -> torch.Tensor:
    """Batch-hard triplet loss on similarities (Sec. 3.2): Eq. 7 with d = -s.

    For each anchor a: ``[m - min_{p} s(a, p) + max_{n} s(a, n)]_+``.

    Args:
        sim: (N, N) similarities between batch samples (row = anchor).
        labels: (N,) integer identity labels.
        margin: m, the triplet margin (in similarity units).
        reduction: see :func:`batch_hard_triplet`.

    Returns:
        Scalar loss (or (N,) with ``reduction="none"``).
    """
    return batch_hard_triplet(-sim, labels, margin, reduction=reduction)


def softmax_ce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Softmax cross-entropy of Eq. 8 (mean over samples by default, see module doc).

    Args:
        logits: (N, C) classifier outputs w_c . f.
        labels: (N,) class indices in [0, C).
        reduction: ``"mean"`` (default), ``"sum"`` (the paper's literal Eq. 8) or ``"none"``.

    Returns:
        Scalar loss (or (N,) with ``reduction="none"``).
    """
    if logits.dim() != 2:
        raise ValueError(f"softmax_ce: logits must have shape (N, C), got {tuple(logits.shape)}")
    return F.cross_entropy(logits, labels, reduction=reduction)
