"""The interface every sequence-similarity aggregator shares (Secs. 3.1, 4.4).

``forward(fq, fg)`` with ``fq`` (B, Mq, D) and ``fg`` (B, Mg, D) (in the paper
Mq = Mg = M) returns ``(similarity (B,), weights (B, Mq*Mg))`` with the clip
pairs in row-major visiting order t = i*Mg + j (i: query clip, j: gallery
clip); ``similarity_matrix(q, g)`` scores every query x gallery pair, chunked
so memory stays bounded, always with eval-mode semantics;
``batch_similarity(q, g)`` does the same with gradients in the module's
current mode (training). The aggregators themselves are in
``reid_utils.models.learned_aggregator`` (Eqs. 1-4) and
``reid_utils.models.baseline_aggregators`` (Eq. 9, mean feature).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm.auto import tqdm

__all__ = ["PairAggregator", "check_pair", "check_bank"]


def check_pair(fq: torch.Tensor, fg: torch.Tensor, dim: int, who: str) -> None:
    """Raise ``ValueError`` unless ``fq`` (B, Mq, dim) and ``fg`` (B, Mg, dim) hold the same B."""
    for name, x in (("fq", fq), ("fg", fg)):
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{who}: {name} must be a tensor of shape (B, M, {dim}), got {shape}")
    if fq.shape[0] != fg.shape[0]:
        raise ValueError(f"{who}: fq and fg must hold the same number of pairs B, got {fq.shape[0]} and {fg.shape[0]}")


def check_bank(x: torch.Tensor, dim: int, name: str, who: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a (N, M, dim) tensor."""
    if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != dim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{who}: {name} must be a tensor of shape (N, M, {dim}), got {shape}")


class PairAggregator(nn.Module):
    """Common interface: chunked ``similarity_matrix`` and ``batch_similarity``."""

    dim: int

    def _param_like(self) -> torch.Tensor | None:
        return next(iter(self.parameters()), None)

    def batch_similarity(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """All (Q, G) similarities through ``forward`` (current mode, with autograd).

        Used in training: every query x gallery pair is expanded and scored by
        ``forward`` at once, so BatchNorm sees all pairs of the batch.

        Args:
            q: (Q, M, D) clip features; g: (G, M, D).

        Returns:
            (Q, G) similarities.
        """
        check_bank(q, self.dim, "q", type(self).__name__)
        check_bank(g, self.dim, "g", type(self).__name__)
        Q, G = q.shape[0], g.shape[0]
        fq = q.repeat_interleave(G, dim=0)
        fg = g.repeat(Q, 1, 1)
        return self.forward(fq, fg)[0].view(Q, G)

    def _chunk_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Eval-mode (Qc, G) similarities of one chunk of queries (no grad)."""
        Q, G = q.shape[0], g.shape[0]
        return self.forward(q.repeat_interleave(G, dim=0), g.repeat(Q, 1, 1))[0].view(Q, G)

    def _similarity_loop(self, q: torch.Tensor, g: torch.Tensor, chunk: int, progress: bool, scorer) -> torch.Tensor:
        """Tile Q x G into blocks of about ``chunk`` pairs and score each with ``scorer``."""
        who = f"{type(self).__name__}.similarity_matrix"
        check_bank(q, self.dim, "q", who)
        check_bank(g, self.dim, "g", who)
        if int(chunk) < 1:
            raise ValueError(f"{who}: chunk must be >= 1, got {chunk}")
        p = self._param_like()
        dev = p.device if p is not None else q.device
        dt = p.dtype if p is not None else q.dtype
        Q, G = q.shape[0], g.shape[0]
        gb = max(1, min(G, int(chunk)))  # gallery block
        rows = max(1, int(chunk) // gb)  # query rows per block
        tiles = [(qs, gs) for qs in range(0, Q, rows) for gs in range(0, G, gb)]
        out = torch.empty(Q, G, dtype=dt, device=q.device)
        was_training = self.training
        self.eval()
        try:
            gd = g.to(device=dev, dtype=dt) if gb == G else None
            for qs, gs in tqdm(tiles, disable=not progress, leave=False, desc=f"{type(self).__name__} similarities"):
                qd = q[qs : qs + rows].to(device=dev, dtype=dt)
                gblk = gd if gd is not None else g[gs : gs + gb].to(device=dev, dtype=dt)
                out[qs : qs + rows, gs : gs + gb] = scorer(qd, gblk).to(out.device)
        finally:
            self.train(was_training)
        return out

    @torch.no_grad()
    def similarity_matrix(
        self, q: torch.Tensor, g: torch.Tensor, chunk: int = 1024, progress: bool = True
    ) -> torch.Tensor:
        """Similarities of every query x gallery sequence pair, in eval mode.

        The module is switched to eval mode for the call (its training flag is
        restored afterwards). The Q x G pairs are tiled into blocks of about
        ``chunk`` pairs, so peak memory is bounded by the chunk, not Q x G.

        Args:
            q: (Q, Mq, D) query clip features (not necessarily normalised).
            g: (G, Mg, D) gallery clip features.
            chunk: pairs per block.
            progress: show a tqdm bar.

        Returns:
            (Q, G) similarities on ``q``'s device, in the module's dtype.
        """
        return self._similarity_loop(q, g, chunk, progress, self._chunk_scores)
