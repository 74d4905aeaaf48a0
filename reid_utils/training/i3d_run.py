"""One training run of the I3D for re-ID (Sec. 3.2, Eqs. 7-8): the network with the
identity classifier of Eq. 8 (:class:`ReIDNet`), the batches, the step of the triplet
(Eq. 7) + softmax (Eq. 8) loss, the periodic evaluation, all driven by
``reid_utils.training.loop.run_loop``. ``reid_utils.training.i3d.train_i3d`` caches the
result. Under ``torchrun`` each rank loads its slice of the global batch and the loss is
that of the gathered global batch (``reid_utils.training.distributed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from reid_utils.data.sampling import pk_batch, sample_clip
from reid_utils.data.tracklets import require_train
from reid_utils.data.transforms import (
    FrameCache,
    augment_clip,
    augment_params,
    frames_to_tensor,
    input_size,
    load_frames,
)
from reid_utils.models.i3d import InceptionI3d
from reid_utils.models.losses import batch_hard_triplet, pairwise_euclidean, softmax_ce
from reid_utils.training import accel, distributed
from reid_utils.training.features import extract_clip_features
from reid_utils.training.loading import LockedFrameCache, bounded_map
from reid_utils.training.loop import Checkpoint, run_loop

TRAIN_BN_MOMENTUM = 0.1
PORT_BN_MOMENTUM = 0.01


class ReIDNet(nn.Module):
    """I3D backbone + the identity classifier of Eq. 8.

    The classifier ``nn.Linear(D, C, bias=False)`` (Eq. 8 has no bias) is applied after
    a ``BatchNorm1d`` "neck" with a frozen zero shift (BNNeck, Luo et al., CVPRW 2019):
    ``w_c . BN(f)``; the triplet loss and retrieval use the raw features ``f``, as in the
    paper. Reason: trained from scratch (the CPU profiles), the literal ``w_c . f``
    collapsed on the synthetic benchmark (triplet loss at the margin with all features
    equal, softmax at ln C, test mAP at chance, also after 1500 iterations); with the
    neck both losses fall and the features generalise. The I3D's own Kinetics
    ``logits`` layer stays in the model (the reference layout still loads), untrained
    (frozen here, so that DistributedDataParallel sees no unused trainable parameter).

    Args:
        backbone: an :class:`InceptionI3d`.
        num_ids: C, the number of training identities.

    ``forward(x)`` maps clips (B, 3, L, H, W) to ``(features (B, D), logits (B, C))``.
    """

    def __init__(self, backbone: InceptionI3d, num_ids: int):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.BatchNorm1d(backbone.feat_dim)
        self.neck.bias.requires_grad_(False)  # BNNeck: scale only, no shift
        self.classifier = nn.Linear(backbone.feat_dim, num_ids, bias=False)
        self.backbone.logits.requires_grad_(False)

    def forward(self, x: torch.Tensor):
        f = self.backbone.extract_features(x)
        with torch.autocast(x.device.type, enabled=False):
            logits = self.classifier(self.neck(f.float()))
        return f, logits

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimiser groups: decay (Adam's L2 form) on conv/linear weights, none on
        BatchNorm parameters; the backbone's unused Kinetics ``logits`` layer is left out."""
        decay, no_decay = [], []
        for n, p in self.named_parameters():
            if n.startswith("backbone.logits.") or not p.requires_grad:
                continue
            (decay if p.ndim > 1 else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _set_bn_momentum(model: nn.Module, momentum: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def _milestones(cfg) -> list[int]:
    return sorted({max(1, int(f * cfg.train.iterations)) for f in cfg.train.lr_milestones})


def batch_plan(cfg, pids: np.ndarray, lengths: np.ndarray, clip_len: int, it: int):
    """Tracklet indices, clip frame indices, flips and augmentations of iteration ``it`` (0-based).

    Everything is drawn from ``numpy.random.default_rng([cfg.seed, 2, it])``: a batch
    does not depend on what ran before, which makes resuming exact and lets batches be
    prefetched. Augmentation: a horizontal flip of the whole clip with probability 0.5;
    when ``cfg.train.color_jitter`` / ``cfg.train.random_erasing`` are non-zero, also a
    per-clip colour cast and a random erased box (``transforms.augment_clip``). Both
    are off in every profile: on the default synthetic benchmark they lowered
    single-clip mAP after 2000 iterations (24.7 % against 30.8 %).

    Args:
        cfg: ``Config`` (seed, ``train.P``, ``train.K``, ``train.sampling``, augmentation).
        pids: (N,) identity of each training tracklet. lengths: (N,) its frame count.
        clip_len: L. it: the iteration.
    """
    rng = np.random.default_rng([int(cfg.seed), 2, int(it)])
    idx = pk_batch(pids, cfg.train.P, cfg.train.K, rng)
    clips = [sample_clip(int(lengths[i]), clip_len, cfg.train.sampling, rng) for i in idx]
    flips = rng.random(len(idx)) < 0.5
    tc = cfg.train
    augs = [
        augment_params(rng, tc.color_jitter, tc.random_erasing) if (tc.color_jitter or tc.random_erasing) else None
        for _ in idx
    ]
    return idx, clips, flips, augs


def _batches(cfg, dataset, clip_len: int, frame_cache: FrameCache):
    """``batches(its)`` of ``run_loop``: clips (B, 3, L, H, W) and labels (B,) of each
    iteration, loaded one step ahead on a worker thread when ``cfg.num_workers > 0``.
    Under torchrun the clips are this rank's slice of the global batch
    (``distributed.local_slice``) and the labels those of the whole global batch."""
    pid2label = {p: i for i, p in enumerate(sorted({t.pid for t in dataset.train}))}
    pids = np.array([t.pid for t in dataset.train], dtype=np.int64)
    labels_all = np.array([pid2label[p] for p in pids], dtype=np.int64)
    lengths = np.array([len(t.frames) for t in dataset.train], dtype=np.int64)
    size = input_size(cfg)

    def load_batch(it: int):
        idx, clips, flips, augs = batch_plan(cfg, pids, lengths, clip_len, it)
        part = distributed.local_slice(len(idx))
        xs = []
        for i, c, f, a in zip(idx[part], clips[part], flips[part], augs[part]):
            t = dataset.train[int(i)]
            frames = load_frames([t.frames[k] for k in c], size, frame_cache)
            x = frames_to_tensor(frames[:, :, ::-1] if f else frames)
            xs.append(x if a is None else augment_clip(x, a))
        x = torch.stack(xs, out=accel.pinned_empty((len(xs), *xs[0].shape), xs[0].dtype, cfg.torch_device()))
        return x, torch.from_numpy(labels_all[idx])

    return lambda its: bounded_map(load_batch, its, min(cfg.num_workers, 2), 2)


def _step(model: nn.Module, opt: torch.optim.Optimizer, margin: float, device: torch.device):
    """``step((x, y)) -> (loss, stats)`` of ``run_loop``: Eq. 7 + Eq. 8 on one batch.

    ``model``: the :class:`ReIDNet`, or its DistributedDataParallel wrapper; then features
    and logits of every rank are gathered (``distributed.gather_with_grad``), the loss is
    that of the global batch, and its gradient is scaled by the world size
    (``distributed.scale_grad``: DDP averages the ranks' partial gradients).
    """

    def step(batch):
        x, y = batch
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last_3d)
        y = y.to(device)
        with accel.autocast(device):
            feats, logits = model(x)
        feats, logits = feats.float(), logits.float()
        if distributed.world_size() > 1:
            feats, logits = distributed.gather_with_grad(feats), distributed.gather_with_grad(logits)
        l_tri = batch_hard_triplet(pairwise_euclidean(feats), y, margin)
        l_ce = softmax_ce(logits, y)
        return distributed.scale_grad(l_tri + l_ce), {
            "triplet": l_tri.item(),
            "softmax": l_ce.item(),
            "lr": opt.param_groups[0]["lr"],
        }

    return step


def evaluate_model(
    cfg, backbone: InceptionI3d, dataset, clip_len: int, progress: bool = False, frame_cache: FrameCache | None = None
) -> dict:
    """mAP and rank-1 of single ``evenly`` clips (the periodic check during training).

    One ``evenly`` clip of ``clip_len`` frames per query/gallery tracklet, Euclidean
    distances (``reid_utils.eval.ranking.evaluate_features``). It only monitors
    training: the trained model is the last iteration's, never selected on the test set.

    Args:
        cfg: ``Config`` (input size, device, num_workers).
        backbone: the :class:`InceptionI3d` (its mode is restored afterwards).
        dataset: ``.query`` and ``.gallery`` tracklets.
        clip_len: L of the evaluated clips.
        progress: tqdm bars. frame_cache: decoded-frame cache shared with training.

    Returns:
        ``{"mAP": float, "rank1": float}`` in [0, 1].
    """
    from reid_utils.eval.ranking import evaluate_features

    kw = dict(
        num_clips=1,
        clip_len=clip_len,
        method="evenly",
        size=input_size(cfg),
        device=cfg.torch_device(),
        num_workers=cfg.num_workers,
        progress=progress,
        frame_cache=frame_cache,
    )
    q = extract_clip_features(backbone, dataset.query, desc="eval query", **kw)
    g = extract_clip_features(backbone, dataset.gallery, desc="eval gallery", **kw)
    r = evaluate_features(q.feats[:, 0], g.feats[:, 0], dataset)
    return {"mAP": r["mAP"], "rank1": r["rank1"]}


def run_training(
    cfg,
    dataset,
    clip_len: int,
    backbone: InceptionI3d,
    ckpt: Path,
    checkpoint_every: int | None,
    callback: Callable[[int, dict], None] | None,
    progress: bool,
) -> dict:
    """Train ``backbone`` with a fresh classifier for ``cfg.train.iterations`` iterations.

    Adam (lr ``cfg.train.lr``, weight decay ``cfg.train.weight_decay`` on conv/linear
    weights only, ``ReIDNet.param_groups``), lr multiplied by ``cfg.train.lr_gamma`` at
    the fractions ``cfg.train.lr_milestones`` of the iterations; mean loss reductions
    (``reid_utils.models.losses``), triplet margin ``cfg.train.margin``. BatchNorm trains
    with momentum 0.1 (PyTorch's default) instead of the port's 0.01, so that the running
    statistics follow the weights within the few hundred iterations of the CPU profiles
    (at 0.01 a third of the running average after 100 iterations would still be the
    initial (0, 1)); the model is returned with the port's 0.01. bf16 autocast on CUDA,
    fp32 on CPU; ``channels_last_3d`` memory format (faster with cuDNN and oneDNN).
    Under torchrun: DistributedDataParallel with synchronised BatchNorm
    (``distributed.wrap_ddp``), equivalent to one process on the global batch; only
    rank 0 writes checkpoints and shows the bar, every rank evaluates.

    Args:
        cfg: ``Config``. dataset: ``.train``, ``.query``, ``.gallery`` tracklets.
        clip_len: L_train. backbone: the initial :class:`InceptionI3d` (CPU).
        ckpt: checkpoint file, resumed when present.
        checkpoint_every: iterations between checkpoints (default
            ``min(cfg.train.eval_every, 1000)``; 1000 when ``eval_every`` is 0).
        callback: ``callback(iteration, row)`` after every iteration.
        progress: tqdm bar.

    Returns:
        The cache entry: ``backbone``, ``neck``, ``classifier`` state dicts (CPU),
        ``history`` (list of rows), ``seconds`` and the shapes.
    """
    tc = cfg.train
    device = cfg.torch_device()
    accel.configure_backends(device)
    require_train(dataset, "train_i3d")
    num_ids = len({t.pid for t in dataset.train})
    eval_every = int(tc.eval_every) if tc.eval_every else 0
    every = int(checkpoint_every or min(eval_every or 1000, 1000))
    t0 = time.perf_counter()
    model = ReIDNet(backbone, num_ids)
    _set_bn_momentum(model, TRAIN_BN_MOMENTUM)
    accel.prepare_model(model, device)
    net = distributed.wrap_ddp(model, device)  # model itself in a single process
    opt = torch.optim.Adam(model.param_groups(tc.weight_decay), lr=tc.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(cfg), gamma=tc.lr_gamma)
    frame_cache = LockedFrameCache()

    def evaluate() -> dict:
        return evaluate_model(cfg, model.backbone, dataset, clip_len, frame_cache=frame_cache)

    history = run_loop(
        "train_i3d",
        model,
        opt,
        _batches(cfg, dataset, clip_len, frame_cache),
        _step(net, opt, tc.margin, device),
        tc.iterations,
        scheduler=sched,
        checkpoint=Checkpoint(ckpt, every, rng=True),
        evaluate=evaluate if eval_every else None,
        eval_every=eval_every,
        callback=callback,
        progress=progress,
        desc=f"train I3D L={clip_len}",
    )
    _set_bn_momentum(model, PORT_BN_MOMENTUM)
    model.eval()
    return _entry(cfg, model, history, clip_len, num_ids, time.perf_counter() - t0)


def _entry(cfg, model: ReIDNet, history: list, clip_len: int, num_ids: int, seconds: float) -> dict:
    """What the cache keeps of a finished run (state dicts on the CPU)."""

    def cpu(m: nn.Module) -> dict:
        return {k: v.detach().cpu() for k, v in m.state_dict().items()}

    return {
        "backbone": cpu(model.backbone),
        "classifier": cpu(model.classifier),
        "neck": cpu(model.neck),
        "history": history,
        "width_mult": cfg.model.width_mult,
        "num_classes": model.backbone.num_classes,
        "feat_dim": model.backbone.feat_dim,
        "clip_len": clip_len,
        "num_ids": num_ids,
        "seconds": seconds,
    }
