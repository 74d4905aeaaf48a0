"""Reference aggregators: top-t% of clip-pair cosines (Eq. 9; Sec. 4.4) and the mean feature (Sec. 4.3).

* :class:`TopTAggregator` - the top-t% clip-similarity baseline of Chen et
  al. (Eq. 9), in its ``eval`` and ``train-eval`` variants (Sec. 4.4).
* :class:`MeanFeatureAggregator` - the plain reference: cosine between the
  means of the L2-normalised clip features (Sec. 4.3, "Averaging features").

Both follow the interface of ``reid_utils.models.pair_aggregator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from reid_utils.models.pair_aggregator import PairAggregator, check_bank, check_pair

__all__ = ["TopTAggregator", "MeanFeatureAggregator", "top_t_count"]


def top_t_count(t_percent: float, num_pairs: int) -> int:
    """Number of clip pairs kept by top-t%: k = max(1, round_half_up(t/100 * M^2)).

    Rounding half up (not Python's banker's rounding), so e.g. t = 10 % of
    64 pairs keeps 6 pairs and t = 10 % of 16 pairs keeps 2.
    """
    return max(1, min(int(num_pairs), int(math.floor(t_percent / 100.0 * num_pairs + 0.5))))


class TopTAggregator(PairAggregator):
    """Top-t% clip-similarity aggregation (Eq. 9, Chen et al.; Sec. 4.4).

    A learned D -> D linear projection (initialised to the identity, so an
    untrained model is plain cosine similarity - the paper does not say how
    it is initialised), the cosine similarities of all clip pairs, and the
    mean of the top t % of them (see :func:`top_t_count`).

    *The neck (our remedy for a collapse).* The I3D's clip features are non-negative
    (ReLU, then average pooling), so their cosines crowd near 1; under heavy
    corruption the hardest negative of most anchors is
    more similar than the hardest positive, and the batch-hard loss (Eq. 7 on
    similarities) then has a trivial way down: the projection adds a direction shared by
    every clip, squeezing all cosines towards 1 and the loss towards the margin, without
    learning to rank (seen in development: without the neck the mined positive and
    negative similarities of top-t%-train-eval rose to within 0.005 of 1 at M_c^max = 5-7
    while its validation mAP hardly moved; with it, validation mAP rose by several
    points). With ``neck=True`` the projected features are
    standardised by a BatchNorm without affine parameters (batch statistics in
    training, running statistics at test time; the "BNNeck" of Luo et al., CVPRW
    2019) before the cosine, so no shared direction survives and the cosines spread
    over [-1, 1]. At initialisation (running mean 0, variance 1) the neck is the
    identity, so an untrained model is still plain cosine similarity.

    Args:
        dim: D.
        t_percent: t in (0, 100].
        mode: ``"eval"`` (top-t%-eval: mean of ALL pairs while training, top-t
            at test time) or ``"train-eval"`` (top-t also in training, so
            gradients reach only the selected pairs).
        neck: standardise the projected features before the cosine (see above).
    """

    MODES = ("eval", "train-eval")

    def __init__(self, dim: int, t_percent: float, mode: str = "eval", neck: bool = False):
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"TopTAggregator: dim must be >= 1, got {dim}")
        if not 0.0 < float(t_percent) <= 100.0:
            raise ValueError(f"TopTAggregator: t_percent must be in (0, 100], got {t_percent}")
        if mode not in self.MODES:
            raise ValueError(f"TopTAggregator: mode must be one of {self.MODES}, got {mode!r}")
        self.dim, self.t_percent, self.mode = int(dim), float(t_percent), mode
        self.neck = nn.BatchNorm1d(self.dim, affine=False) if neck else None
        self.proj = nn.Linear(self.dim, self.dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(self.dim))
            self.proj.bias.zero_()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, t_percent={self.t_percent:g}, mode={self.mode!r}, neck={self.neck is not None}"

    def _use_top_t(self) -> bool:
        return (not self.training) or self.mode == "train-eval"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, M, D) clip features -> projected (and, with the neck, standardised), L2-normalised."""
        z = self.proj(x)
        if self.neck is not None:
            z = self.neck(z.reshape(-1, self.dim)).view_as(z)
        return F.normalize(z, dim=-1)

    def pair_cosines(self, fq: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        """Cosines of projected clip pairs: (B, Mq, D), (B, Mg, D) -> (B, Mq*Mg), row-major."""
        pq, pg = self._embed(fq), self._embed(fg)
        return torch.bmm(pq, pg.transpose(1, 2)).flatten(1)

    def _aggregate(self, cos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., T) pair cosines -> (similarity (...), weights (..., T))."""
        T = cos.shape[-1]
        if not self._use_top_t():
            return cos.mean(dim=-1), torch.full_like(cos, 1.0 / T)
        k = top_t_count(self.t_percent, T)
        vals, idx = cos.topk(k, dim=-1)
        w = torch.zeros_like(cos).scatter_(-1, idx, 1.0 / k)
        return vals.mean(dim=-1), w

    def forward(self, fq: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 9 (or the mean of all pairs while training in ``eval`` mode).

        Args:
            fq: (B, Mq, D); fg: (B, Mg, D) clip features.

        Returns:
            similarity: (B,).
            weights: (B, Mq*Mg) weight of each pair in the mean (1/k on the
                selected pairs, 0 elsewhere; 1/(Mq*Mg) for the plain mean).
        """
        check_pair(fq, fg, self.dim, "TopTAggregator.forward")
        return self._aggregate(self.pair_cosines(fq, fg))

    def _pair_cos_matrix(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(Q, M, D), (G, M, D) -> (Q, G, Mq*Mg) projected clip-pair cosines."""
        pq = self._embed(q)
        pg = pq if g is q else self._embed(g)
        Q, Mq, _ = pq.shape
        G, Mg, _ = pg.shape
        cos = pq.reshape(Q * Mq, -1) @ pg.reshape(G * Mg, -1).t()
        return cos.view(Q, Mq, G, Mg).permute(0, 2, 1, 3).reshape(Q, G, Mq * Mg)

    def batch_similarity(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(Q, G) similarities with autograd in the current mode (projects each clip once)."""
        check_bank(q, self.dim, "q", "TopTAggregator")
        check_bank(g, self.dim, "g", "TopTAggregator")
        return self._aggregate(self._pair_cos_matrix(q, g))[0]

    def _chunk_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self._aggregate(self._pair_cos_matrix(q, g))[0]


class MeanFeatureAggregator(PairAggregator):
    """Reference without parameters: cosine between mean-pooled clip features.

    Each clip feature is L2-normalised (``normalize=True``, the better
    variant in Fig. 4) before averaging over the M clips; the similarity is
    the cosine of the two means. Equivalently a uniformly weighted sum of the
    clip-pair cosines, s = sum_ij w * cos_ij with w = 1 / (|sum_i f_q,i|
    |sum_j f_g,j|), which is what ``forward`` returns as weights.

    Args:
        dim: D.
        normalize: L2-normalise clip features before averaging.
    """

    def __init__(self, dim: int, normalize: bool = True):
        super().__init__()
        self.dim, self.normalize = int(dim), bool(normalize)

    def _means(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = F.normalize(x, dim=-1)
        return x.sum(dim=1)

    def forward(self, fq: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (similarity (B,), weights (B, Mq*Mg)); see class doc."""
        check_pair(fq, fg, self.dim, "MeanFeatureAggregator.forward")
        sq, sg = self._means(fq), self._means(fg)
        nq, ng = sq.norm(dim=-1).clamp_min(1e-12), sg.norm(dim=-1).clamp_min(1e-12)
        s = (sq * sg).sum(-1) / (nq * ng)
        w = (1.0 / (nq * ng))[:, None].expand(-1, fq.shape[1] * fg.shape[1])
        return s, w

    def _chunk_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        mq = F.normalize(self._means(q), dim=-1)
        mg = F.normalize(self._means(g), dim=-1)
        return mq @ mg.t()
