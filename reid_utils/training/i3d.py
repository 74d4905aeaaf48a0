"""Re-ID training of the I3D backbone (Sec. 3.2, "3D CNN"; Eqs. 7-8).

Each iteration draws a P x K batch (P identities, K training tracklets each,
``sampling.pk_batch``), one clip of L frames per tracklet
(``sampling.sample_clip`` with ``cfg.train.sampling``), and minimises

    L = L_triplet (Eq. 7, batch-hard, Euclidean distances of the features)
      + L_softmax (Eq. 8, a linear classifier over the C training identities)

on the global-average-pooled ``Mixed_5c`` features (``InceptionI3d.extract_features``).

Choices where the paper defers to its supplement (stated here once):

* Optimiser: Adam (lr ``cfg.train.lr``, L2 weight decay
  ``cfg.train.weight_decay``), step schedule: lr multiplied by
  ``cfg.train.lr_gamma`` at the fractions ``cfg.train.lr_milestones`` of
  ``cfg.train.iterations``. Loss reductions: the mean over the batch
  (``reid_utils.losses``), triplet margin ``cfg.train.margin``.
* Classifier of Eq. 8: ``nn.Linear(D, C, bias=False)`` (Eq. 8 has no bias)
  applied to the features after a ``BatchNorm1d`` "neck" with a frozen zero
  shift (BNNeck, Luo et al., "Bag of Tricks and a Strong Baseline for Deep
  Person Re-Identification", CVPRW 2019): ``w_c . BN(f)``. The triplet loss
  and retrieval use the raw features ``f``, as in the paper. Reason: trained
  from scratch (the CPU profiles), the literal ``w_c . f`` collapsed in our
  runs on the synthetic benchmark (the triplet loss fell to the margin with
  all features equal, the softmax stayed at ln C, test mAP at chance, also
  after 1500 iterations), while with the neck both losses fall and the
  features generalise. The I3D's own Kinetics ``logits`` layer is kept in the
  model (so the reference layout still loads) but is not trained or used.
* Weight decay (``cfg.train.weight_decay``, Adam's L2 form) on conv/linear
  weights only, not on BatchNorm parameters (common practice).
* Initialisation: Kinetics-400 (``reid_utils.pretrained.kinetics_i3d``) when
  ``cfg.model.pretrained`` (full width only), else PyTorch's default init from
  ``cfg.seed``.
* BatchNorm: trained in batch-statistics mode with momentum 0.1 (PyTorch's
  default) instead of the port's 0.01, so that the running statistics follow
  the weights within the few hundred iterations of the CPU profiles (at
  momentum 0.01 a third of the running average after 100 iterations would still
  be the initial (0, 1)); the model is returned with the port's 0.01.
* Augmentation: horizontal flip of the whole clip with probability 0.5; when
  ``cfg.train.color_jitter`` / ``cfg.train.random_erasing`` are non-zero, also
  a per-clip colour cast and a random erased box (``transforms.augment_clip``).
  Both are off in every profile: on the default synthetic benchmark they
  lowered single-clip mAP after 2000 iterations (24.7 % against 30.8 %).
* The batch of iteration ``i`` (identities, tracklets, frames, flips) is drawn
  from ``numpy.random.default_rng([cfg.seed, 2, i])``: it does not depend on
  what ran before, which makes resuming exact and lets batches be prefetched.
* Mixed precision: bf16 autocast on CUDA; fp32 on CPU. ``channels_last_3d``
  memory format everywhere (faster with cuDNN and with oneDNN on the CPU).
* Periodic mAP (every ``cfg.train.eval_every`` iterations and at the end): one
  ``evenly`` clip of ``clip_len`` frames per query/gallery tracklet, Euclidean
  distances, ``evaluation.evaluate_rank``. It only monitors training: the
  returned model is the last iteration's, never selected on the test set.

Checkpoints (model, classifier, optimiser, scheduler, RNG states, iteration,
history) are written atomically and verified through ``reid_utils.cache``
every ``checkpoint_every`` iterations; a restarted run resumes from the last
one and ends with the same weights as an uninterrupted run (on the same
device and thread count). The finished model is cached under the key of
(model + train configs, clip_len, seed, dataset identity).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

from reid_utils.cache import ArtifactCache, torch_load_verified, torch_save_verified
from reid_utils.config import config_key
from reid_utils.data.sampling import pk_batch, sample_clip
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
from reid_utils.training.features import LockedFrameCache, _bounded_map, extract_clip_features, tracklets_key

TRAIN_VERSION = 2  # bump when the training recipe changes (invalidates cached models)
TRAIN_BN_MOMENTUM = 0.1
PORT_BN_MOMENTUM = 0.01


class ReIDNet(nn.Module):
    """I3D backbone + the identity classifier of Eq. 8.

    Args:
        backbone: an :class:`InceptionI3d`.
        num_ids: C, the number of training identities.

    ``forward(x)`` maps clips (B, 3, L, H, W) to ``(features (B, D), logits (B, C))``:
    the raw I3D features (triplet loss, retrieval) and ``classifier(neck(f))``
    (softmax loss), see the module docstring.
    """

    def __init__(self, backbone: InceptionI3d, num_ids: int):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.BatchNorm1d(backbone.feat_dim)
        self.neck.bias.requires_grad_(False)  # BNNeck: scale only, no shift
        self.classifier = nn.Linear(backbone.feat_dim, num_ids, bias=False)

    def forward(self, x: torch.Tensor):
        f = self.backbone.extract_features(x)
        with torch.autocast(x.device.type, enabled=False):
            logits = self.classifier(self.neck(f.float()))
        return f, logits

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimiser groups: decay on conv/linear weights, none on BatchNorm
        parameters; the backbone's unused Kinetics ``logits`` layer is left out."""
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


def dataset_identity(dataset) -> dict:
    """What identifies a dataset for the cache: name, protocol and tracklet-list hashes."""
    return {
        "name": getattr(dataset, "name", "?"),
        "protocol": getattr(dataset, "protocol", ""),
        "train": tracklets_key(dataset.train),
        "query": tracklets_key(dataset.query),
        "gallery": tracklets_key(dataset.gallery),
    }


def train_key(cfg, dataset, clip_len: int | None = None, init=None) -> str:
    """Cache key of a trained model: model + train configs, clip_len, seed, dataset
    (and the key of the model it was initialised from, if any)."""
    tcfg = dataclasses.replace(cfg.train, clip_len=int(clip_len or cfg.train.clip_len))
    spec = {
        "v": TRAIN_VERSION,
        "model": dataclasses.asdict(cfg.model),
        "train": dataclasses.asdict(tcfg),
        "seed": cfg.seed,
        "data": dataset_identity(dataset),
    }
    if init is not None:
        spec["init"] = _init_key(init)
    return config_key(spec)


def _init_key(init) -> str:
    key = getattr(init, "reid_key", None)
    if not key:
        raise ValueError("train_i3d: init must be a trained model from train_i3d (it has no .reid_key)")
    return key


def build_backbone(cfg) -> InceptionI3d:
    """The I3D of ``cfg.model``: Kinetics-initialised when ``pretrained`` (width 1 only)."""
    if cfg.model.pretrained:
        if cfg.model.width_mult != 1.0:
            raise ValueError(
                f"cfg.model.pretrained=True needs width_mult=1.0 (Kinetics weights are "
                f"full width); got width_mult={cfg.model.width_mult}"
            )
        from reid_utils.models.pretrained import kinetics_i3d

        net = kinetics_i3d()
    else:
        torch.manual_seed(cfg.seed)
        net = InceptionI3d(width_mult=cfg.model.width_mult)
    if net.feat_dim != cfg.model.feat_dim:
        raise ValueError(
            f"cfg.model.feat_dim={cfg.model.feat_dim} but InceptionI3d(width_mult="
            f"{cfg.model.width_mult}) gives {net.feat_dim}-D features"
        )
    return net


def _milestones(cfg) -> list[int]:
    return sorted({max(1, int(f * cfg.train.iterations)) for f in cfg.train.lr_milestones})


def _batch_plan(cfg, pids: np.ndarray, lengths: np.ndarray, clip_len: int, it: int):
    """Tracklet indices, clip frame indices, flips and augmentations of iteration ``it`` (0-based)."""
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


def evaluate_model(
    cfg, backbone: InceptionI3d, dataset, clip_len: int, progress: bool = False, frame_cache: FrameCache | None = None
) -> dict:
    """mAP and rank-1 of single ``evenly`` clips (the periodic check during training)."""
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


def train_i3d(
    cfg,
    dataset,
    clip_len: int | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
    init: InceptionI3d | None = None,
):
    """Train (or load from the cache) the I3D for re-ID (Sec. 3.2).

    Args:
        cfg: ``Config`` (model, train, seed, device, cache root).
        dataset: object with ``.train``, ``.query``, ``.gallery`` tracklet lists
            (``reid_utils.datasets.VideoDataset``).
        clip_len: L_train (default ``cfg.train.clip_len``).
        progress: tqdm bar and cache messages.
        checkpoint_every: iterations between resumable checkpoints (default
            ``min(cfg.train.eval_every, 1000)``; 1000 when ``eval_every`` is 0).
        callback: called as ``callback(iteration, row)`` after every
            iteration (1-based; ``row`` is the history entry).
        init: a model returned by ``train_i3d`` whose backbone weights start
            this run (a warm start; the classifier of Eq. 8 starts afresh).
            Part of the cache key.

    Returns:
        ``(model, history)``: the trained :class:`InceptionI3d` in eval mode on
        the configured device, with ``model.reid_key`` (its cache key, used by
        ``reid_utils.features``), and a pandas DataFrame with one row per
        iteration (``iteration, loss, triplet, softmax, lr, seconds`` and
        ``mAP, rank1`` where evaluated, NaN elsewhere).
    """
    clip_len = int(clip_len or cfg.train.clip_len)
    key = train_key(cfg, dataset, clip_len, init)
    cache = ArtifactCache(cfg.cache_root)
    entry = cache.get_or_compute(
        "i3d",
        key,
        lambda: _train(cfg, dataset, clip_len, key, cache, progress, checkpoint_every, callback, init),
        verbose=progress,
    )
    _remove_checkpoint(cache, key)  # the final model is cached: the resume point is obsolete
    return _model_from_entry(cfg, entry, key)


def _model_from_entry(cfg, entry: dict, key: str):
    import pandas as pd

    net = InceptionI3d(num_classes=entry["num_classes"], width_mult=entry["width_mult"])
    net.load_state_dict(entry["backbone"], strict=True)
    net = net.to(cfg.torch_device()).eval()
    net.reid_key = key
    history = pd.DataFrame(entry["history"])
    net.history = history
    return net, history


def get_trained_i3d(cfg, clip_len: int | None = None, dataset=None, progress: bool = True):
    """The profile's trained I3D for L_train: from the cache, else trained now.

    Args:
        cfg: ``Config``.
        clip_len: L_train (default ``cfg.train.clip_len``).
        dataset: the dataset (default ``datasets.load_dataset_for_config(cfg)``).

    Returns:
        :class:`InceptionI3d` in eval mode with ``.reid_key`` and ``.history``
        (see :func:`trained_i3d`).
    """
    if dataset is None:
        from reid_utils.data.datasets import load_dataset_for_config

        dataset = load_dataset_for_config(cfg)
    return trained_i3d(cfg, dataset, clip_len, progress=progress)[0]


def finetune_config(cfg):
    """``cfg`` with the training schedule of the warm-started phase (``cfg.ablation``)."""
    n = int(cfg.ablation.finetune_iterations)
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train,
            iterations=n,
            lr=float(cfg.ablation.finetune_lr),
            eval_every=min(int(cfg.train.eval_every or n), n),
        ),
    )


def trained_i3d(cfg, dataset, clip_len: int | None = None, progress: bool = True):
    """The profile's I3D for L_train: ``(model, history)``.

    ``cfg.ablation.finetune_iterations == 0`` (``paper``): :func:`train_i3d`
    with L_train = ``clip_len``, as in the paper. Otherwise (``default``: the CPU
    cannot afford one full training per L_train within its budget) every model
    shares one *trunk*, :func:`train_i3d` on clips of ``cfg.train.clip_len``
    frames, and then trains ``finetune_iterations`` more iterations at
    ``finetune_lr`` on clips of its own length L_train (a warm start; the
    L_train = ``cfg.train.clip_len`` model gets the same extra phase, so the
    models differ only in the clip length of that phase). The returned history
    is the trunk's followed by the extra phase's (``phase`` column:
    ``trunk`` / ``finetune``; iterations continue from the trunk's).
    """
    import pandas as pd

    clip_len = int(clip_len or cfg.train.clip_len)
    if not cfg.ablation.finetune_iterations:
        return train_i3d(cfg, dataset, clip_len, progress=progress)
    trunk, h0 = train_i3d(cfg, dataset, cfg.train.clip_len, progress=progress)
    model, h1 = train_i3d(finetune_config(cfg), dataset, clip_len, progress=progress, init=trunk)
    h1 = h1.assign(iteration=h1["iteration"] + int(h0["iteration"].max()))
    history = pd.concat([h0.assign(phase="trunk"), h1.assign(phase="finetune")], ignore_index=True)
    model.history = history
    return model, history


def _train(
    cfg,
    dataset,
    clip_len: int,
    key: str,
    cache: ArtifactCache,
    progress: bool,
    checkpoint_every: int | None,
    callback,
    init=None,
) -> dict:
    from tqdm.auto import tqdm

    tc = cfg.train
    device = cfg.torch_device()
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    if not dataset.train:
        raise ValueError("train_i3d: dataset.train is empty")
    pid2label = {p: i for i, p in enumerate(sorted({t.pid for t in dataset.train}))}
    pids = np.array([t.pid for t in dataset.train], dtype=np.int64)
    labels_all = np.array([pid2label[p] for p in pids], dtype=np.int64)
    lengths = np.array([len(t.frames) for t in dataset.train], dtype=np.int64)
    size = input_size(cfg)
    eval_every = int(tc.eval_every) if tc.eval_every else 0
    checkpoint_every = int(checkpoint_every or min(eval_every or 1000, 1000))

    backbone = build_backbone(cfg)
    if init is not None:
        backbone.load_state_dict({k: v.detach().cpu() for k, v in init.state_dict().items()}, strict=True)
    model = ReIDNet(backbone, len(pid2label))
    _set_bn_momentum(model, TRAIN_BN_MOMENTUM)
    model.to(device, memory_format=torch.channels_last_3d)  # faster on CUDA and CPU alike
    opt = torch.optim.Adam(model.param_groups(tc.weight_decay), lr=tc.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, _milestones(cfg), gamma=tc.lr_gamma)
    history: list[dict] = []
    start = 0

    ckpt = cache.path("i3d-checkpoint", key)
    if ckpt.exists():
        try:
            state = torch_load_verified(ckpt)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            if cuda and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            history, start = state["history"], int(state["iteration"])
            if progress:
                print(f"[train] resuming from iteration {start} ({ckpt.name})")
        except Exception as e:  # corrupt / incompatible: start over
            print(f"[train] ignoring unusable checkpoint {ckpt} ({e}); starting from scratch")
            ckpt.unlink(missing_ok=True)
    frame_cache = LockedFrameCache()

    def load_batch(it: int):
        idx, clips, flips, augs = _batch_plan(cfg, pids, lengths, clip_len, it)
        xs = []
        for i, c, f, a in zip(idx, clips, flips, augs):
            t = dataset.train[int(i)]
            frames = load_frames([t.frames[k] for k in c], size, frame_cache)
            x = frames_to_tensor(frames[:, :, ::-1] if f else frames)
            xs.append(x if a is None else augment_clip(x, a))
        return torch.stack(xs), torch.from_numpy(labels_all[idx])

    # Batches are loaded one step ahead on a worker thread when cfg.num_workers > 0.
    batches = _bounded_map(load_batch, range(start, tc.iterations), min(cfg.num_workers, 2), 2)
    bar = tqdm(total=tc.iterations, initial=start, desc=f"train I3D L={clip_len}", disable=not progress, leave=True)
    model.train()
    try:
        for it, (x, y) in zip(range(start, tc.iterations), batches):
            t0 = time.perf_counter()
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last_3d)
            y = y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                feats, logits = model(x)
            feats, logits = feats.float(), logits.float()
            l_tri = batch_hard_triplet(pairwise_euclidean(feats), y, tc.margin)
            l_ce = softmax_ce(logits, y)
            loss = l_tri + l_ce
            if not torch.isfinite(loss):
                raise FloatingPointError(f"train_i3d: non-finite loss at iteration {it + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr = opt.param_groups[0]["lr"]
            sched.step()
            n = it + 1
            row = {
                "iteration": n,
                "loss": loss.item(),
                "triplet": l_tri.item(),
                "softmax": l_ce.item(),
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
            if eval_every and (n % eval_every == 0 or n == tc.iterations):
                model.eval()
                row.update(evaluate_model(cfg, model.backbone, dataset, clip_len, frame_cache=frame_cache))
                model.train()
            history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", **({"mAP": f"{row['mAP']:.3f}"} if "mAP" in row else {}))
            if n % checkpoint_every == 0 and n < tc.iterations:
                torch_save_verified(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None,
                        "iteration": n,
                        "history": history,
                    },
                    ckpt,
                )
            if callback is not None:
                callback(n, row)
    finally:
        bar.close()
        batches.close()
    _set_bn_momentum(model, PORT_BN_MOMENTUM)
    model.eval()
    entry = {
        "backbone": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        "classifier": {k: v.detach().cpu() for k, v in model.classifier.state_dict().items()},
        "neck": {k: v.detach().cpu() for k, v in model.neck.state_dict().items()},
        "history": history,
        "width_mult": cfg.model.width_mult,
        "num_classes": model.backbone.num_classes,
        "feat_dim": model.backbone.feat_dim,
        "clip_len": clip_len,
        "key": key,
        "num_ids": len(pid2label),
    }
    return entry


def _remove_checkpoint(cache: ArtifactCache, key: str) -> None:
    p = cache.path("i3d-checkpoint", key)
    p.unlink(missing_ok=True)
    p.with_name(p.name + ".sha256").unlink(missing_ok=True)
