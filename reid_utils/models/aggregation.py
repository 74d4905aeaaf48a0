"""Sequence similarity from M clip features per sequence (Secs. 3.1, 4.2, 4.4).

* :class:`LearnedClipAggregator` - the paper's contribution, learned clip
  similarity aggregation (Eqs. 1-4, architecture of Sec. 4.2).
* :class:`TopTAggregator` - the top-t% clip-similarity baseline of Chen et
  al. (Eq. 9), in its ``eval`` and ``train-eval`` variants (Sec. 4.4).
* :class:`MeanFeatureAggregator` - the plain reference: cosine between the
  means of the L2-normalised clip features (Sec. 4.3, "Averaging features").

All share one interface: ``forward(fq, fg)`` with ``fq`` (B, Mq, D) and
``fg`` (B, Mg, D) (in the paper Mq = Mg = M) returns ``(similarity (B,),
weights (B, Mq*Mg))`` with the clip pairs in row-major visiting order
t = i*Mg + j (i: query clip, j: gallery clip); ``similarity_matrix(q, g)``
scores every query x gallery pair, chunked so memory stays bounded, always
with eval-mode semantics; ``batch_similarity(q, g)`` does the same with
gradients in the module's current mode (training).

Learned aggregation, as implemented (Eqs. 1-4)::

    c_t     = f_q,i * f_g,j                       (elementwise, L2-normalised f)
    alpha_t = g(r_{t-1} - c_t)                    (Eq. 1)
    A_t     = A_{t-1} + alpha_t
    r_t     = r_{t-1} + alpha_t / A_t (c_t - r_{t-1})   (Eq. 2, running mean)
    s       = sum_d r_{M^2}[d]                    (Eq. 4)
            = sum_t alpha_t cos_t / sum_t alpha_t (Eq. 3)

*alpha_1 choice.* The paper sets r_1 = c_1 and leaves alpha_1 undefined. We
start from r_0 = 0 and A_0 = 0, so alpha_1 = g(-c_1) is a well-defined
positive score and Eq. 2 still gives r_1 = c_1 for any alpha_1 > 0; alpha_1
then weighs the first pair in Eq. 3 like every other pair. (Should every
alpha underflow to 0, A_t is clamped to the smallest positive float, giving
r = 0 and similarity 0 instead of NaN.)

*Fast evaluation path* (``similarity_matrix`` in eval mode). With BatchNorm
folded into the Linear layers and dropout off, the first layer is linear in
its input, W1 (r_{t-1} - c_t) = v_{t-1} - u_t with u_t = W1 c_t and
v_t = W1 r_t. Since r_t is an alpha-weighted running mean of the c_i, v_t is
the same running mean of the u_i (linearity), so r (D-dimensional) is never
formed and v_{t-1} - u_t is the first layer's pre-activation. The u_t do not
depend on the alphas; they are computed one step at a time as a GEMM over all
pairs of the block, (P, D) @ (D, H), which on our CPU ran ~1.4x faster than
one GEMM over all M_g steps of a query clip (8k+ rows fall out of the L2
cache); the H x H second layer, the H -> 1 output and an H-wide running mean
are the rest of each step, vectorised over the P pairs. The similarity is
Eq. 3 with the clip-pair cosines from one GEMM. ``tests/test_aggregation.py`` checks it against the reference
recurrence in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = [
    "LearnedClipAggregator",
    "TopTAggregator",
    "MeanFeatureAggregator",
    "make_importance_net",
    "top_t_count",
]


# --------------------------------------------------------------------------- #
# shared plumbing
# --------------------------------------------------------------------------- #
def _check_pair(fq: torch.Tensor, fg: torch.Tensor, dim: int, who: str) -> None:
    for name, x in (("fq", fq), ("fg", fg)):
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != dim:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{who}: {name} must be a tensor of shape (B, M, {dim}), got {shape}")
    if fq.shape[0] != fg.shape[0]:
        raise ValueError(f"{who}: fq and fg must hold the same number of pairs B, got {fq.shape[0]} and {fg.shape[0]}")


def _check_bank(x: torch.Tensor, dim: int, name: str, who: str) -> None:
    if not torch.is_tensor(x) or x.dim() != 3 or x.shape[-1] != dim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{who}: {name} must be a tensor of shape (N, M, {dim}), got {shape}")


class _PairAggregator(nn.Module):
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
        _check_bank(q, self.dim, "q", type(self).__name__)
        _check_bank(g, self.dim, "g", type(self).__name__)
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
        _check_bank(q, self.dim, "q", who)
        _check_bank(g, self.dim, "g", who)
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


# --------------------------------------------------------------------------- #
# learned clip similarity aggregation (Eqs. 1-4)
# --------------------------------------------------------------------------- #
class _Dropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn by ``rand_like(x) >= p``.

    Same semantics (zero with probability p, scale survivors by 1/(1-p));
    on the CPU it is ~3x faster than the Bernoulli kernel behind
    ``F.dropout``, which was ~30 % of a training step of the aggregator.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep / (1.0 - self.p)


def make_importance_net(dim: int, hidden: int, dropout: float = 0.5) -> nn.Sequential:
    """The importance network g_theta of Sec. 4.2.

    [Linear(dim, hidden) -> BatchNorm1d -> ReLU -> Dropout] x 2, then
    Linear(hidden, 1) -> softplus, so scores are strictly positive. BatchNorm
    in training normalises over the batch of pairs at each step t.

    Returns:
        ``nn.Sequential`` mapping (N, dim) to (N, 1).
    """
    return nn.Sequential(
        nn.Linear(dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        _Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        _Dropout(dropout),
        nn.Linear(hidden, 1),
        nn.Softplus(),
    )


def _fold_bn(lin: nn.Linear, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm folded into the preceding Linear: (W', b') with W' (out, in)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    w = lin.weight * scale[:, None]
    b = (lin.bias - bn.running_mean) * scale + bn.bias
    return w, b


class LearnedClipAggregator(_PairAggregator):
    """Learned clip similarity aggregation (Sec. 3.1, Eqs. 1-4; Sec. 4.2).

    Args:
        dim: D, clip feature dimension.
        hidden: width of both hidden layers of g (1024 in the paper).
        dropout: dropout probability after each hidden layer (0.5 in the paper).

    Attributes:
        importance_net: g, maps (N, dim) to (N, 1) positive scores.
        bn_momentum: running-statistics momentum of g's BatchNorm *per
            training forward*. In training, BatchNorm normalises the batch of
            pairs at each of the T = Mq*Mg steps with that step's statistics;
            g is called T times per forward, so each call updates the running
            statistics with momentum ``bn_momentum / T``. The running
            statistics used at test time then weigh every step t alike (with
            PyTorch's per-call 0.1 they would reflect only the last ~10 steps
            of the last batch, whose inputs r_{t-1} - c_t are distributed
            differently from the early steps').
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.5):
        super().__init__()
        if int(dim) < 1 or int(hidden) < 1:
            raise ValueError(f"LearnedClipAggregator: dim and hidden must be >= 1, got {dim}, {hidden}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"LearnedClipAggregator: dropout must be in [0, 1), got {dropout}")
        self.dim, self.hidden, self.dropout = int(dim), int(hidden), float(dropout)
        self.importance_net = make_importance_net(self.dim, self.hidden, self.dropout)
        self.bn_momentum = 0.1

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, dropout={self.dropout:g}"

    # -- reference recurrence (training, tests) -------------------------------
    def forward(self, fq: torch.Tensor, fg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference recurrence of Eqs. 1-2, similarity by Eq. 4.

        Args:
            fq: (B, Mq, D) query clip features; fg: (B, Mg, D) gallery clip
                features (both L2-normalised here).

        Returns:
            similarity: (B,) = sum_d r_{Mq*Mg}.
            alpha: (B, Mq*Mg) importance scores in visiting order t = i*Mg + j.
        """
        _check_pair(fq, fg, self.dim, "LearnedClipAggregator.forward")
        fq = F.normalize(fq, dim=-1)
        fg = F.normalize(fg, dim=-1)
        B, Mq, D = fq.shape
        Mg = fg.shape[1]
        c = (fq[:, :, None, :] * fg[:, None, :, :]).reshape(B, Mq * Mg, D)
        if self.training:  # running BN statistics: average over all T steps (class doc)
            for m in self.importance_net.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.momentum = self.bn_momentum / (Mq * Mg)
        r = fq.new_zeros(B, D)  # r_0 = 0 (alpha_1 = g(-c_1))
        A = fq.new_zeros(B)  # A_0 = 0
        tiny = torch.finfo(fq.dtype).tiny
        alphas = []
        for t in range(Mq * Mg):
            ct = c[:, t]
            alpha = self.importance_net(r - ct).reshape(B)
            A = A + alpha
            r = r + (alpha / A.clamp_min(tiny))[:, None] * (ct - r)
            alphas.append(alpha)
        return r.sum(dim=-1), torch.stack(alphas, dim=1)

    # -- fast eval path -------------------------------------------------------
    def _folded(self, dtype: torch.dtype):
        net = self.importance_net
        w1, b1 = _fold_bn(net[0], net[1])
        w2, b2 = _fold_bn(net[4], net[5])
        w3, b3 = net[8].weight[0], net[8].bias[0]
        cast = lambda x: x.detach().to(dtype)  # noqa: E731
        return (
            cast(w1).t().contiguous(),
            cast(b1),
            cast(w2).t().contiguous(),
            cast(b2),
            cast(w3).contiguous(),
            cast(b3),
        )

    def _chunk_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Fast eval-mode (Qc, G) similarities (see module doc); no autograd."""
        if self.training:
            raise RuntimeError("LearnedClipAggregator: the fast path needs eval mode")
        w1t, b1, w2t, b2, w3, b3 = self._folded(q.dtype)
        q = F.normalize(q, dim=-1)
        g = F.normalize(g, dim=-1)
        Qc, Mq, D = q.shape
        G, Mg, _ = g.shape
        P, H = Qc * G, w2t.shape[0]
        qt = q.transpose(0, 1)  # (Mq, Qc, D)
        gt = g.transpose(0, 1)  # (Mg, G, D)
        # clip-pair cosines, (Mq, Mg, P) with pair index p = qi*G + gi
        cos = torch.einsum("iqd,jgd->ijqg", qt, gt).reshape(Mq, Mg, P)
        v = q.new_zeros(P, H)  # v_t = W1' r_t, v_0 = 0
        A = q.new_zeros(P)  # A_t
        num = q.new_zeros(P)  # sum_t alpha_t cos_t
        c = q.new_empty(Qc, G, D)
        u = q.new_empty(P, H)
        pre = q.new_empty(P, H)
        h2 = q.new_empty(P, H)
        diff = q.new_empty(P, H)
        tiny = torch.finfo(q.dtype).tiny
        for i in range(Mq):
            for j in range(Mg):
                torch.mul(qt[i][:, None, :], gt[j][None, :, :], out=c)  # c_t, all pairs
                torch.mm(c.view(P, D), w1t, out=u)  # u_t = W1' c_t
                torch.sub(v, u, out=pre).add_(b1).relu_()  # layer 1
                torch.addmm(b2, pre, w2t, out=h2).relu_()  # layer 2
                alpha = F.softplus(torch.mv(h2, w3).add_(b3))  # output
                A.add_(alpha)
                num.addcmul_(alpha, cos[i, j])
                torch.sub(u, v, out=diff)
                v.addcmul_((alpha / A.clamp_min(tiny))[:, None], diff)  # Eq. 2 on W1' r
        return (num / A.clamp_min(tiny)).view(Qc, G)

    use_fused_kernel = True  # False: never pick the fused CUDA kernel automatically

    @torch.no_grad()
    def similarity_matrix(
        self,
        q: torch.Tensor,
        g: torch.Tensor,
        chunk: int = 1024,
        progress: bool = True,
        fast: bool = True,
        kernel: bool | None = None,
    ) -> torch.Tensor:
        """Eval-mode similarities of all query x gallery pairs, (Q, G).

        Args:
            q: (Q, Mq, D); g: (G, Mg, D) clip features.
            chunk: about this many (query, gallery) pairs per block; peak
                memory of the fast path ~ chunk * (D + 4 H + Mq * Mg) floats.
            progress: tqdm bar.
            fast: use the folded fast path (default); ``False`` runs the
                reference recurrence (``forward``) on each block instead.
            kernel: the fused Triton kernel (``reid_utils.fused_scoring``, bf16
                operands, fp32 state; same function within its accuracy
                contract). ``None``: automatically when the model or ``q`` is on
                CUDA, triton imports and ``use_fused_kernel`` is True; ``True``:
                required; ``False``: never (the comparison path). Ignored when
                ``fast`` is False. The kernel chunks by itself (``chunk`` does
                not apply; see ``fused_scoring.fused_similarity_matrix``).

        Returns:
            (Q, G) similarities (Eq. 3 / Eq. 4).
        """
        if fast and kernel is not False:
            p = next(iter(self.parameters()), None)
            if kernel or q.is_cuda or (p is not None and p.is_cuda):  # import triton only then
                from reid_utils.models.fused_scoring import fused_similarity_matrix, should_use_kernel

                if should_use_kernel(self, q, kernel):
                    return fused_similarity_matrix(self, q, g, progress=progress)
        scorer = self._chunk_scores if fast else super()._chunk_scores
        return self._similarity_loop(q, g, chunk, progress, scorer)


# --------------------------------------------------------------------------- #
# top-t% baseline (Eq. 9) and the mean-feature reference
# --------------------------------------------------------------------------- #
def top_t_count(t_percent: float, num_pairs: int) -> int:
    """Number of clip pairs kept by top-t%: k = max(1, round_half_up(t/100 * M^2)).

    Rounding half up (not Python's banker's rounding), so e.g. t = 10 % of
    64 pairs keeps 6 pairs and t = 10 % of 16 pairs keeps 2.
    """
    return max(1, min(int(num_pairs), int(math.floor(t_percent / 100.0 * num_pairs + 0.5))))


class TopTAggregator(_PairAggregator):
    """Top-t% clip-similarity aggregation (Eq. 9, Chen et al.; Sec. 4.4).

    A learned D -> D linear projection (initialised to the identity, so an
    untrained model is plain cosine similarity - the paper does not say how
    it is initialised), the cosine similarities of all clip pairs, and the
    mean of the top t % of them (see :func:`top_t_count`).

    Args:
        dim: D.
        t_percent: t in (0, 100].
        mode: ``"eval"`` (top-t%-eval: mean of ALL pairs while training, top-t
            at test time) or ``"train-eval"`` (top-t also in training, so
            gradients reach only the selected pairs).
    """

    MODES = ("eval", "train-eval")

    def __init__(self, dim: int, t_percent: float, mode: str = "eval"):
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"TopTAggregator: dim must be >= 1, got {dim}")
        if not 0.0 < float(t_percent) <= 100.0:
            raise ValueError(f"TopTAggregator: t_percent must be in (0, 100], got {t_percent}")
        if mode not in self.MODES:
            raise ValueError(f"TopTAggregator: mode must be one of {self.MODES}, got {mode!r}")
        self.dim, self.t_percent, self.mode = int(dim), float(t_percent), mode
        self.proj = nn.Linear(self.dim, self.dim)
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(self.dim))
            self.proj.bias.zero_()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, t_percent={self.t_percent:g}, mode={self.mode!r}"

    def _use_top_t(self) -> bool:
        return (not self.training) or self.mode == "train-eval"

    def pair_cosines(self, fq: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        """Cosines of projected clip pairs: (B, Mq, D), (B, Mg, D) -> (B, Mq*Mg), row-major."""
        pq = F.normalize(self.proj(fq), dim=-1)
        pg = F.normalize(self.proj(fg), dim=-1)
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
        _check_pair(fq, fg, self.dim, "TopTAggregator.forward")
        return self._aggregate(self.pair_cosines(fq, fg))

    def _pair_cos_matrix(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(Q, M, D), (G, M, D) -> (Q, G, Mq*Mg) projected clip-pair cosines."""
        pq = F.normalize(self.proj(q), dim=-1)
        pg = F.normalize(self.proj(g), dim=-1)
        Q, Mq, _ = pq.shape
        G, Mg, _ = pg.shape
        cos = pq.reshape(Q * Mq, -1) @ pg.reshape(G * Mg, -1).t()
        return cos.view(Q, Mq, G, Mg).permute(0, 2, 1, 3).reshape(Q, G, Mq * Mg)

    def batch_similarity(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """(Q, G) similarities with autograd in the current mode (projects each clip once)."""
        _check_bank(q, self.dim, "q", "TopTAggregator")
        _check_bank(g, self.dim, "g", "TopTAggregator")
        return self._aggregate(self._pair_cos_matrix(q, g))[0]

    def _chunk_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self._aggregate(self._pair_cos_matrix(q, g))[0]


class MeanFeatureAggregator(_PairAggregator):
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
        _check_pair(fq, fg, self.dim, "MeanFeatureAggregator.forward")
        sq, sg = self._means(fq), self._means(fg)
        nq, ng = sq.norm(dim=-1).clamp_min(1e-12), sg.norm(dim=-1).clamp_min(1e-12)
        s = (sq * sg).sum(-1) / (nq * ng)
        w = (1.0 / (nq * ng))[:, None].expand(-1, fq.shape[1] * fg.shape[1])
        return s, w

    def _chunk_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        mq = F.normalize(self._means(q), dim=-1)
        mg = F.normalize(self._means(g), dim=-1)
        return mq @ mg.t()
