"""Training the clip-similarity aggregators on frozen clip features (Sec. 3.2).

"Clip similarity aggregation module" (Sec. 3.2): with the 3D CNN frozen, batches of
P identities x K sequences with M clips each; the similarities of all B x B sequence
pairs of the batch (B = P*K, every ordered pair, a sequence with itself included); the
batch-hard triplet loss of Eq. 7 with the distances replaced by negative similarities.
The same loop (``reid_utils.training.loop``) trains the top-t% baselines of Sec. 4.4
(their projection layer) in both variants.

It works on a precomputed feature bank ``feats`` (N, M, D), so the I3D never runs
here. For the corruption experiments (Sec. 4.4) ``batch_transform`` can draw a fresh
corruption plan for every batch from clean and corrupted banks
(:func:`corrupting_transform`). Hard-example mining (``mining=``, a speed choice that
keeps the loss): see :func:`resolve_mining`. Optimiser: Adam with a constant learning
rate (the paper leaves the aggregator's schedule to its supplement, which we do not
have).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from reid_utils.data.corruption import assemble_corrupted, corruption_plan
from reid_utils.data.sampling import pk_batch
from reid_utils.models.aggregation import LearnedClipAggregator, MeanFeatureAggregator, TopTAggregator
from reid_utils.models.losses import batch_hard_triplet_similarity
from reid_utils.training.loop import Checkpoint, run_loop

__all__ = [
    "train_aggregator",
    "corrupting_transform",
    "build_aggregator",
    "AGGREGATOR_KINDS",
    "MINING",
    "resolve_mining",
    "hardest_pairs",
    "mined_triplet_loss",
]

AGGREGATOR_KINDS = ("learned", "topt-eval", "topt-train-eval", "mean")
MINING = ("auto", "hard", "full")


def build_aggregator(
    kind: str,
    dim: int,
    hidden: int = 1024,
    dropout: float = 0.5,
    t_percent: float = 100.0,
    seed: int = 0,
    neck: bool = False,
) -> nn.Module:
    """Construct an aggregator with seeded initial weights (caller's RNG untouched).

    Args:
        kind: ``"learned"`` (:class:`LearnedClipAggregator`), ``"topt-eval"``,
            ``"topt-train-eval"`` (:class:`TopTAggregator`) or ``"mean"``
            (:class:`MeanFeatureAggregator`, no parameters, not trainable).
        dim: D. hidden, dropout: learned only. t_percent, neck: top-t only (``neck``:
            the BatchNorm neck of :class:`TopTAggregator`).
        seed: seed of the initial weights.
    """
    if kind not in AGGREGATOR_KINDS:
        raise ValueError(f"kind: expected one of {AGGREGATOR_KINDS}, got {kind!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "learned":
            return LearnedClipAggregator(dim, hidden, dropout)
        if kind == "mean":
            return MeanFeatureAggregator(dim)
        return TopTAggregator(dim, t_percent, mode=kind[len("topt-") :], neck=neck)


def corrupting_transform(corrupted: torch.Tensor, max_corrupted: int) -> Callable:
    """A ``batch_transform`` that corrupts random clips of every batch (Sec. 4.4).

    For each batch a fresh :func:`corruption_plan` (M_c ~ U{0..max_corrupted}
    per sequence) picks which clips take their features from ``corrupted``.

    Args:
        corrupted: (N, M, D) features of the corrupted clips, aligned with the
            clean bank passed to :func:`train_aggregator`.
        max_corrupted: M_c^max.

    Returns:
        ``transform(idx, feats_batch, rng) -> feats_batch``.
    """
    corrupted = torch.as_tensor(corrupted)
    if corrupted.dim() != 3:
        raise ValueError(f"corrupted: expected (N, M, D) features, got {tuple(corrupted.shape)}")
    M = corrupted.shape[1]
    if not 0 <= int(max_corrupted) <= M:
        raise ValueError(f"max_corrupted: expected 0..{M}, got {max_corrupted}")

    def transform(idx: np.ndarray, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        plan = corruption_plan(len(idx), M, int(max_corrupted), rng)
        bad = corrupted[torch.as_tensor(idx)].to(device=x.device, dtype=x.dtype)
        return assemble_corrupted(x, bad, plan)

    return transform


def resolve_mining(model: nn.Module, mining: str) -> str:
    """The hard-example mining of :func:`train_aggregator`: ``"auto"`` -> ``"hard"`` for
    :class:`LearnedClipAggregator`, ``"full"`` for the others.

    * ``"full"``: all B x B pair similarities go through the training forward (train
      mode, dropout) with autograd; exact, but for the learned aggregator that is fwd+bwd
      over B^2 pairs x M^2 recurrence steps (~7 s per step at B = 64, M = 8, D = H = 256
      on a CPU core) although only 2B pairs reach the loss.
    * ``"hard"``: :func:`mined_triplet_loss`: the B x B similarities come from the fast
      eval path without gradients (running BatchNorm statistics, no dropout), and only
      each anchor's hardest positive and negative pair (2B pairs) go through the
      training forward. Same pairs and loss as ``"full"`` up to the eval/train-mode
      difference of the mining pass; BatchNorm then sees 2B pairs per step, not B^2.
    * ``"auto"`` picks ``"full"`` for the top-t% baselines: their B^2 projected cosines
      are cheap, and in top-t%-eval the training forward (mean of all pairs) differs
      from the eval-mode similarity (top-t), so eval-mode mining would mine the wrong
      function.

    Args:
        model: the aggregator to train.
        mining: ``"auto"``, ``"hard"`` or ``"full"``.
    """
    if mining not in MINING:
        raise ValueError(f"mining: expected one of {MINING}, got {mining!r}")
    if mining == "auto":
        return "hard" if isinstance(model, LearnedClipAggregator) else "full"
    if mining == "hard" and not hasattr(model, "similarity_matrix"):
        raise ValueError(f"mining='hard' needs a model with similarity_matrix, got {type(model).__name__}")
    return mining


def hardest_pairs(S: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each anchor's hardest positive and hardest negative in a similarity matrix.

    Args:
        S: (B, B) similarities (row = anchor).
        labels: (B,) identities.

    Returns:
        ``(pos, neg)``, two (B,) index tensors: ``pos[a]`` = argmin of S[a] over
        the same identity (the anchor itself included), ``neg[a]`` = argmax of
        S[a] over the other identities - the pairs the batch-hard loss of
        :func:`reid_utils.losses.batch_hard_triplet_similarity` uses.
    """
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S: expected a square (B, B) matrix, got {tuple(S.shape)}")
    labels = torch.as_tensor(labels, device=S.device)
    if labels.shape != (S.shape[0],):
        raise ValueError(f"labels: expected shape ({S.shape[0]},), got {tuple(labels.shape)}")
    same = labels[:, None] == labels[None, :]
    if bool(same.all(dim=1).any()):
        raise ValueError("labels: some anchor has no negative in the batch (need >= 2 identities)")
    pos = S.masked_fill(~same, float("inf")).argmin(dim=1)
    neg = S.masked_fill(same, float("-inf")).argmax(dim=1)
    return pos, neg


def mined_triplet_loss(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, margin: float
) -> tuple[torch.Tensor, dict]:
    """Batch-hard triplet loss with eval-mode hard-example mining (``mining="hard"``).

    1. ``S = model.similarity_matrix(x, x)``: all B x B similarities, no grad,
       eval mode (running BatchNorm statistics, no dropout; fast path);
    2. :func:`hardest_pairs` on ``S``;
    3. ``model(fq, fg)`` on the 2B pairs (anchor, hardest positive) and
       (anchor, hardest negative) in the model's *current* mode, with autograd;
    4. ``mean_a [margin - s(a, p_a) + s(a, n_a)]_+``.

    Args:
        model: an aggregator with ``similarity_matrix`` and ``forward``.
        x: (B, M, D) clip features of the batch. labels: (B,) identities.
        margin: triplet margin (similarity units).

    Returns:
        ``(loss, info)``: the scalar loss and a dict with ``pos``, ``neg``
        (selected indices), ``sim_pos``, ``sim_neg`` ((B,) similarities of the
        selected pairs from step 3, detached) and ``S_mine`` (the (B, B)
        mining similarities).
    """
    B = x.shape[0]
    labels = torch.as_tensor(labels, device=x.device)
    with torch.no_grad():
        S_mine = model.similarity_matrix(x, x, progress=False)  # switches to eval and back
    pos, neg = hardest_pairs(S_mine, labels)
    anchors = torch.arange(B, device=x.device)
    s, _ = model(x[torch.cat([anchors, anchors])], x[torch.cat([pos, neg])])
    sp, sn = s[:B], s[B:]
    loss = torch.relu(margin - sp + sn).mean()
    return loss, {"pos": pos, "neg": neg, "sim_pos": sp.detach(), "sim_neg": sn.detach(), "S_mine": S_mine}


def _iter_seed(seed: int, it: int) -> int:
    """Seed of torch's RNG (dropout) at iteration ``it``."""
    return int(np.random.default_rng([int(seed), int(it), 7]).integers(0, 2**62))


def _batch_stats(S: torch.Tensor, labels: torch.Tensor, margin: float) -> dict:
    with torch.no_grad():
        per = batch_hard_triplet_similarity(S, labels, margin, reduction="none")
        same = labels[:, None] == labels[None, :]
        pos = S.masked_fill(~same, float("inf")).amin(1)
        neg = S.masked_fill(same, float("-inf")).amax(1)
    return {
        "active": float((per > 0).float().mean()),
        "hard_pos_sim": float(pos.mean()),
        "hard_neg_sim": float(neg.mean()),
    }


def _pair_stats(sp: torch.Tensor, sn: torch.Tensor, margin: float) -> dict:
    return {
        "active": float(((margin - sp + sn) > 0).float().mean()),
        "hard_pos_sim": float(sp.mean()),
        "hard_neg_sim": float(sn.mean()),
    }


@contextmanager
def _torch_threads(threads: int):
    """torch's CPU thread count set to ``threads`` (0: left alone) inside, restored after."""
    if int(threads) < 0:
        raise ValueError(f"threads: expected >= 0 (0: torch's setting), got {threads}")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fingerprint(model, feats, P, K, lr, margin, seed, weight_decay, mining) -> dict:
    """What a checkpoint must match to be resumed by this run."""
    return {
        "model": repr(model),
        "feats_shape": list(feats.shape),
        "P": int(P),
        "K": int(K),
        "lr": float(lr),
        "margin": float(margin),
        "seed": int(seed),
        "weight_decay": float(weight_decay),
        "mining": mining,
    }


def _checked_inputs(model: nn.Module, feats, pids, iterations: int, ckpt_every: int):
    """``(feats, pids, params)`` as tensors / arrays, or ValueError."""
    feats = torch.as_tensor(feats)
    if feats.dim() != 3:
        raise ValueError(f"feats: expected (N, M, D) clip features, got {tuple(feats.shape)}")
    pids = np.asarray(pids.cpu() if torch.is_tensor(pids) else pids)
    if pids.shape != (feats.shape[0],):
        raise ValueError(f"pids: expected shape ({feats.shape[0]},), got {pids.shape}")
    if int(iterations) < 0:
        raise ValueError(f"iterations: expected >= 0, got {iterations}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"model: {type(model).__name__} has no trainable parameters")
    if int(ckpt_every) < 1:
        raise ValueError(f"ckpt_every: expected >= 1, got {ckpt_every}")
    return feats, pids, params


def _pk_batches(feats, pids, P, K, seed, batch_transform, device, dtype):
    """``batches(its)`` of :func:`run_loop`: iteration ``it`` seeds torch (dropout) from
    ``(seed, it)`` and draws its P x K batch from ``numpy.random.default_rng([seed, it])``."""

    def batches(its: range):
        for it in its:
            rng = np.random.default_rng([int(seed), it])
            torch.manual_seed(_iter_seed(seed, it))
            idx = pk_batch(pids, P, K, rng)
            x = feats[torch.as_tensor(idx)].to(device=device, dtype=dtype)
            if batch_transform is not None:
                x = batch_transform(idx, x, rng)
            yield x, torch.as_tensor(pids[idx], device=device)

    return batches


def _triplet_step(model: nn.Module, margin: float, mining: str):
    """``step((x, labels)) -> (loss, stats)`` of :func:`run_loop`, for ``mining``."""

    def step(batch):
        x, labels = batch
        if mining == "hard":
            loss, info = mined_triplet_loss(model, x, labels, margin)
            return loss, _pair_stats(info["sim_pos"], info["sim_neg"], margin)
        S = model.batch_similarity(x, x)
        loss = batch_hard_triplet_similarity(S, labels, margin)
        return loss, _batch_stats(S.detach(), labels, margin)

    return step


def train_aggregator(
    model: nn.Module,
    feats: torch.Tensor,
    pids,
    iterations: int,
    P: int,
    K: int,
    lr: float,
    margin: float,
    seed: int,
    ckpt_path: str | Path | None = None,
    ckpt_every: int = 50,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    batch_transform: Callable[[np.ndarray, torch.Tensor, np.random.Generator], torch.Tensor] | None = None,
    weight_decay: float = 0.0,
    mining: str = "auto",
    progress: bool = True,
    threads: int = 0,
) -> pd.DataFrame:
    """Train an aggregator with batch-hard triplet loss on negative similarities (Sec. 3.2).

    The batch of iteration ``it`` comes from ``numpy.random.default_rng([seed, it])`` and
    torch's RNG (dropout) is seeded from ``(seed, it)`` inside ``torch.random.fork_rng``
    (the caller's RNG state is untouched), so a run resumed from a checkpoint reproduces
    the uninterrupted run exactly.

    Args:
        model: a :class:`LearnedClipAggregator` or :class:`TopTAggregator` (either mode);
            trained in place, on its own device, and left in eval mode.
        feats: (N, M, D) clip features of the training sequences (frozen I3D).
        pids: (N,) identity of each sequence.
        iterations: total number of iterations (a resumed run continues to it).
        P, K: identities per batch and sequences per identity (B = P*K).
        lr: Adam learning rate. margin: triplet margin (similarity units).
        seed: seed of the batches and of dropout.
        ckpt_path: file for resumable checkpoints (atomic, verified); an existing
            checkpoint of the same run is resumed, a finished one is loaded and returned
            without training, one of another run raises ValueError.
        ckpt_every: iterations between checkpoints (also saved at the end).
        eval_fn: ``eval_fn(model) -> {name: value}`` called (eval mode, no grad) every
            ``eval_every`` iterations and after the last one.
        eval_every: see ``eval_fn`` (default: only at the end).
        batch_transform: ``f(idx (B,), feats_batch (B, M, D), rng) -> feats_batch``
            applied to each batch (e.g. :func:`corrupting_transform`).
        weight_decay: Adam weight decay.
        mining: ``"auto"``, ``"hard"`` or ``"full"`` (:func:`resolve_mining`). progress: tqdm bar.
        threads: torch CPU threads while training (0: torch's setting); the model depends on
            it on the CPU (BLAS splits sums by thread): put it in the cache key.

    Returns:
        History, one row per iteration: ``iteration``, ``loss``, ``active`` (fraction of
        anchors with a positive hinge), ``hard_pos_sim``, ``hard_neg_sim`` (batch means of
        the mined similarities, as seen by the training forward), ``seconds`` (wall time
        of the step), and one column per ``eval_fn`` metric (NaN where not evaluated).
    """
    feats, pids, params = _checked_inputs(model, feats, pids, iterations, ckpt_every)
    mining = resolve_mining(model, mining)
    device, dtype = params[0].device, params[0].dtype
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    checkpoint = None
    if ckpt_path is not None:
        fp = _fingerprint(model, feats, P, K, lr, margin, seed, weight_decay, mining)
        checkpoint = Checkpoint(Path(ckpt_path), int(ckpt_every), at_end=True, extra=fp)
    with _torch_threads(threads), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        rows = run_loop(
            "train_aggregator",
            model,
            opt,
            _pk_batches(feats, pids, P, K, seed, batch_transform, device, dtype),
            _triplet_step(model, margin, mining),
            int(iterations),
            checkpoint=checkpoint,
            evaluate=(lambda: eval_fn(model)) if eval_fn is not None else None,
            eval_every=int(eval_every or 0),
            progress=progress,
            desc=f"train {type(model).__name__}",
        )
    model.eval()
    return pd.DataFrame(rows)
