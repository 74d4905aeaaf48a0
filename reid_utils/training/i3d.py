"""Re-ID training of the I3D backbone (Sec. 3.2, "3D CNN"; Eqs. 7-8).

Each iteration draws a P x K batch (P identities, K training tracklets each,
``sampling.pk_batch``), one clip of L frames per tracklet (``sampling.sample_clip`` with
``cfg.train.sampling``), and minimises

    L = L_triplet (Eq. 7, batch-hard, Euclidean distances of the features)
      + L_softmax (Eq. 8, a linear classifier over the C training identities)

on the global-average-pooled ``Mixed_5c`` features (``InceptionI3d.extract_features``).
The choices where the paper defers to its supplement are stated where they are made:
in ``reid_utils.training.i3d_run`` the classifier's BatchNorm neck (``ReIDNet``), the
optimiser, schedule and BatchNorm momentum (``run_training``), the batches and
augmentation (``batch_plan``) and the periodic mAP (``evaluate_model``); here the
initialisation (:func:`build_backbone`) and the warm-started models of the CPU profiles
(:func:`trained_i3d`). The iterations run through ``reid_utils.training.loop``
(resumable checkpoints: a restarted run ends with the weights of an uninterrupted one,
on the same device and thread count). The finished model is cached (kind ``"i3d"``)
under the key of (model + train configs, clip_len, seed, dataset identity, the key of
the initial model). Under ``torchrun`` every rank trains (DistributedDataParallel), rank 0
alone writes the cache entry and the others read it (``reid_utils.training.distributed``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import pandas as pd
import torch

from reid_utils.cache import ArtifactCache, artifact_key
from reid_utils.data.tracklets import require_train
from reid_utils.models.i3d import InceptionI3d
from reid_utils.training import distributed
from reid_utils.training.features import tracklets_key
from reid_utils.training.i3d_run import run_training
from reid_utils.training.result import TrainedModel

__all__ = [
    "build_backbone",
    "dataset_identity",
    "finetune_config",
    "get_trained_i3d",
    "train_i3d",
    "train_key",
    "trained_i3d",
]


def dataset_identity(dataset) -> dict:
    """What identifies a dataset for the cache: name, protocol and tracklet-list hashes."""
    return {
        "name": getattr(dataset, "name", "?"),
        "protocol": getattr(dataset, "protocol", ""),
        "train": tracklets_key(dataset.train),
        "query": tracklets_key(dataset.query),
        "gallery": tracklets_key(dataset.gallery),
    }


def _train_spec(cfg, dataset, clip_len: int, init_key: str | None) -> dict:
    tcfg = dataclasses.replace(cfg.train, clip_len=int(clip_len))
    spec = {
        "model": dataclasses.asdict(cfg.model),
        "train": dataclasses.asdict(tcfg),
        "seed": cfg.seed,
        "data": dataset_identity(dataset),
    }
    if init_key is not None:
        spec["init"] = init_key
    return spec


def train_key(cfg, dataset, clip_len: int | None = None, init_key: str | None = None) -> str:
    """Cache key of a trained model: model + train configs, clip_len, seed, dataset
    (and ``init_key``, the key of the model it was initialised from, if any)."""
    return artifact_key("i3d", _train_spec(cfg, dataset, int(clip_len or cfg.train.clip_len), init_key))


def build_backbone(cfg) -> InceptionI3d:
    """The I3D of ``cfg.model``: Kinetics-400 (``reid_utils.models.pretrained``) when
    ``pretrained`` (full width only), else PyTorch's default init from ``cfg.seed``."""
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


def train_i3d(
    cfg,
    dataset,
    clip_len: int | None = None,
    progress: bool = True,
    checkpoint_every: int | None = None,
    callback: Callable[[int, dict], None] | None = None,
    init: TrainedModel | InceptionI3d | None = None,
    init_key: str | None = None,
) -> TrainedModel:
    """Train (or load from the cache) the I3D for re-ID (Sec. 3.2).

    The recipe (optimiser, schedule, BatchNorm momentum, precision) is that of
    ``reid_utils.training.i3d_run.run_training``.

    Args:
        cfg: ``Config`` (model, train, seed, device, cache root).
        dataset: ``.train``, ``.query``, ``.gallery`` tracklet lists
            (``reid_utils.data.datasets.VideoDataset``).
        clip_len: L_train (default ``cfg.train.clip_len``).
        progress: tqdm bar and cache messages.
        checkpoint_every: iterations between resumable checkpoints (default
            ``min(cfg.train.eval_every, 1000)``; 1000 when ``eval_every`` is 0).
        callback: ``callback(iteration, row)`` after every iteration (1-based; ``row``
            is the history entry).
        init: the model whose backbone weights start this run (a warm start; the
            classifier of Eq. 8 starts afresh): a :class:`TrainedModel`, or a bare
            :class:`InceptionI3d` with ``init_key``.
        init_key: the cache key of a bare ``init`` (part of this model's key).

    Returns:
        :class:`TrainedModel`: the :class:`InceptionI3d` in eval mode on the configured
        device, its cache key, and the history, one row per iteration (``iteration,
        loss, triplet, softmax, lr, seconds`` and ``mAP, rank1`` where evaluated, NaN
        elsewhere).
    """
    require_train(dataset, "train_i3d")
    clip_len = int(clip_len or cfg.train.clip_len)
    init_model, init_key = _resolve_init(init, init_key)
    spec = _train_spec(cfg, dataset, clip_len, init_key)
    key = artifact_key("i3d", spec)
    ckpt = ArtifactCache(cfg.cache_root).path("i3d-checkpoint", key)

    def compute() -> dict:
        model = distributed.rank0_first(lambda: build_backbone(cfg))  # rank 0 fills the weights cache
        if init_model is not None:
            model.load_state_dict({k: v.detach().cpu() for k, v in init_model.state_dict().items()}, strict=True)
        return {**run_training(cfg, dataset, clip_len, model, ckpt, checkpoint_every, callback, progress), "key": key}

    entry = distributed.rank0_cached(cfg.cache_root, "i3d", spec, compute, verbose=progress)
    if distributed.is_main():
        for p in (ckpt, ckpt.with_name(ckpt.name + ".sha256")):  # finished: the resume point is obsolete
            p.unlink(missing_ok=True)
    net = InceptionI3d(num_classes=entry["num_classes"], width_mult=entry["width_mult"])
    net.load_state_dict(entry["backbone"], strict=True)
    info = {"clip_len": entry["clip_len"], "num_ids": entry["num_ids"], "init_key": init_key}
    history = pd.DataFrame(entry["history"])
    seconds = float(entry.get("seconds", math.nan))
    return TrainedModel(net.to(cfg.torch_device()).eval(), key, history, seconds, info)


def _resolve_init(init, init_key: str | None) -> tuple[InceptionI3d | None, str | None]:
    """``(model, key)`` of ``train_i3d``'s warm start."""
    if isinstance(init, TrainedModel):
        if init_key is not None and init_key != init.key:
            raise ValueError(f"train_i3d: init_key={init_key!r} differs from init.key={init.key!r}")
        return init.model, init.key
    if init is None:
        if init_key is not None:
            raise ValueError("train_i3d: init_key given without init")
        return None, None
    if not init_key:
        raise ValueError("train_i3d: init is a bare model; pass its cache key as init_key= (or a TrainedModel)")
    return init, init_key


def get_trained_i3d(cfg, clip_len: int | None = None, dataset=None, progress: bool = True) -> TrainedModel:
    """The profile's trained I3D for L_train: from the cache, else trained now.

    Args:
        cfg: ``Config``.
        clip_len: L_train (default ``cfg.train.clip_len``).
        dataset: the dataset (default ``reid_utils.data.datasets.load_dataset_for_config(cfg)``).
        progress: tqdm bars and cache messages.

    Returns:
        :class:`TrainedModel` (see :func:`trained_i3d`).
    """
    if dataset is None:
        from reid_utils.data.datasets import load_dataset_for_config

        dataset = load_dataset_for_config(cfg)
    return trained_i3d(cfg, dataset, clip_len, progress=progress)


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


def trained_i3d(
    cfg, dataset, clip_len: int | None = None, progress: bool = True, checkpoint_every: int | None = None
) -> TrainedModel:
    """The profile's I3D for L_train.

    ``cfg.ablation.finetune_iterations == 0`` (``paper``): :func:`train_i3d` with
    L_train = ``clip_len``, as in the paper. Otherwise (``default``: the CPU cannot
    afford one full training per L_train within its budget) every model shares one
    *trunk*, :func:`train_i3d` on clips of ``cfg.train.clip_len`` frames, and then trains
    ``finetune_iterations`` more iterations at ``finetune_lr`` on clips of its own length
    L_train (a warm start; the L_train = ``cfg.train.clip_len`` model gets the same extra
    phase, so the models differ only in the clip length of that phase).

    Args:
        cfg: ``Config``. dataset: the dataset. progress: bars and cache messages.
        clip_len: L_train (default ``cfg.train.clip_len``).
        checkpoint_every: see :func:`train_i3d` (not part of the cache key).

    Returns:
        :class:`TrainedModel`; with a trunk, its history is the trunk's followed by the
        extra phase's (``phase`` column: ``trunk`` / ``finetune``; iterations continue
        from the trunk's), ``seconds`` the sum of both and ``info["trunk_key"]`` the
        trunk's key.
    """
    clip_len = int(clip_len or cfg.train.clip_len)
    if not cfg.ablation.finetune_iterations:
        return train_i3d(cfg, dataset, clip_len, progress=progress, checkpoint_every=checkpoint_every)
    trunk = train_i3d(cfg, dataset, cfg.train.clip_len, progress=progress, checkpoint_every=checkpoint_every)
    tuned = train_i3d(
        finetune_config(cfg), dataset, clip_len, progress=progress, checkpoint_every=checkpoint_every, init=trunk
    )
    h0, h1 = trunk.history, tuned.history
    h1 = h1.assign(iteration=h1["iteration"] + int(h0["iteration"].max()))
    history = pd.concat([h0.assign(phase="trunk"), h1.assign(phase="finetune")], ignore_index=True)
    info = {**tuned.info, "trunk_key": trunk.key}
    return dataclasses.replace(tuned, history=history, seconds=trunk.seconds + tuned.seconds, info=info)
