"""The clip-feature bank: I3D features of M clips of L frames per tracklet.

Sec. 3.1 represents a sequence by the features of M clips of L frames (uniformly spread
over it); Sec. 4.3 compares single clips drawn with the frame sampling methods of
Table 1 (Fig. 3) and averages of clip features (Fig. 4: :func:`average_clips`, with or
without :func:`l2_normalise`); Sec. 4.4 feeds corrupted clips through the frozen I3D.
All of them go through :func:`extract_clip_features` (plain) or :func:`get_features`
(cached on disk). Sampling ``method`` per tracklet of T frames: ``"clips"``
(``sampling.sample_clips``: M clips of L consecutive frames centred in M equal
segments, Sec. 3.1), ``"consec"`` / ``"random"`` (``sampling.sample_clip``, Table 1;
M independent draws ordered by their first frame), ``"evenly"`` (M = 1), ``"all"``
(every frame as one clip, M = 1). Random draws use ``numpy.random.default_rng([seed,
i])`` for tracklet i, so the frames of a tracklet never depend on batching or on the
other tracklets. Features are returned as the network gives them (not normalised).
Device policy (bf16 autocast on CUDA, ``channels_last_3d``, pinned uint8 frame buffers):
``reid_utils.training.accel``; under ``torchrun`` the tracklets are sharded across ranks
and gathered in order (``reid_utils.training.sharding``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reid_utils.cache import artifact_key, cached
from reid_utils.data.datasets import DatasetError
from reid_utils.data.sampling import sample_clip, sample_clips
from reid_utils.data.transforms import FrameCache, input_size
from reid_utils.training import accel, sharding
from reid_utils.training import distributed as dist_utils
from reid_utils.training.clip_forward import features_of
from reid_utils.training.loading import clip_loader, shared_frame_cache

METHODS = ("clips", "consec", "random", "evenly", "all")
RANDOM_METHODS = ("consec", "random")

FrameTransform = Callable[[np.ndarray, int, int], np.ndarray]


@dataclass
class FeatureBank:
    """Clip features of N tracklets.

    Attributes:
        feats: (N, M, D) float32 CPU tensor, not normalised.
        pids: (N,) int64 person ids.
        camids: (N,) int64 0-based camera ids.
        indices: (N, M, L) int64 frame indices of every clip; for ``"all"`` a
            list of N arrays (1, T_i).
        meta: how the bank was made (method, M, L, seed, model key, ...).
    """

    feats: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    indices: Any
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    def normalised(self) -> torch.Tensor:
        """(N, M, D) features with every clip feature L2-normalised."""
        return l2_normalise(self.feats)


def l2_normalise(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Unit L2 norm along ``dim`` (zero vectors stay zero)."""
    return torch.nn.functional.normalize(x, p=2.0, dim=dim, eps=eps)


def average_clips(
    feats: torch.Tensor, num: int | None = None, normalise_clips: bool = False, normalise_output: bool = False
) -> torch.Tensor:
    """Sequence feature as the mean of clip features (Sec. 4.3, Fig. 4).

    Args:
        feats: (N, M, D) clip features.
        num: use this many clips, evenly spaced among the M (``sample_clip``'s
            ``evenly`` rule); None: all M.
        normalise_clips: L2-normalise each clip feature before averaging.
        normalise_output: L2-normalise the averaged feature.

    Returns:
        (N, D) sequence features.
    """
    if feats.dim() != 3:
        raise ValueError(f"average_clips: feats must be (N, M, D), got {tuple(feats.shape)}")
    M = feats.shape[1]
    if num is not None:
        if not 1 <= num <= M:
            raise ValueError(f"average_clips: num={num} must be in [1, M={M}]")
        feats = feats[:, torch.from_numpy(sample_clip(M, num, "evenly"))]
    if normalise_clips:
        feats = l2_normalise(feats)
    out = feats.mean(dim=1)
    return l2_normalise(out) if normalise_output else out


def tracklets_key(tracklets: Sequence) -> str:
    """Identity of a tracklet list *and of its frames on disk*: a hash of every tracklet's
    pid, camid and frame paths, and of each frame file's size and modification time
    (so frames replaced in place give a new key and nothing cached from the old ones is
    reused; a size+mtime manifest, not a content hash: ~1 us per frame).

    Raises:
        DatasetError: a frame file is missing (names the frame and its tracklet).
    """
    h = hashlib.sha256()
    for t in tracklets:
        h.update(json.dumps([int(t.pid), int(t.camid), len(t.frames)]).encode())
        h.update("\n".join(map(str, t.frames)).encode())
        h.update(b"\x00")
        h.update(",".join(_stamp(f, t) for f in t.frames).encode())
    return h.hexdigest()[:16]


def _stamp(frame, tracklet) -> str:
    try:
        st = os.stat(frame)
    except OSError as e:
        raise DatasetError(
            f"{frame}: frame of tracklet {getattr(tracklet, 'tid', '?')} cannot be read ({e.strerror})"
        ) from None
    return f"{st.st_size}:{st.st_mtime_ns}"


def clip_indices(
    num_frames: int, num_clips: int, clip_len: int, method: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Frame indices (M, L) of the clips of one tracklet (``"all"``: (1, T)).

    Args:
        num_frames: T.
        num_clips: M.
        clip_len: L (ignored by ``"all"``).
        method: one of :data:`METHODS`.
        rng: numpy Generator, needed by ``consec`` and ``random``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    if method in ("evenly", "all") and num_clips != 1:
        raise ValueError(f"method={method!r} gives a single clip per tracklet; got num_clips={num_clips}")
    if method == "clips":
        return sample_clips(num_frames, num_clips, clip_len)
    if method == "all":
        return sample_clip(num_frames, clip_len, "all")[None, :]
    clips = np.stack([sample_clip(num_frames, clip_len, method, rng) for _ in range(num_clips)])
    return clips[np.argsort(clips[:, 0], kind="stable")]


def extract_clip_features(
    model: torch.nn.Module,
    tracklets: Sequence,
    num_clips: int = 1,
    clip_len: int = 4,
    method: str = "clips",
    *,
    size=(256, 128),
    seed: int = 0,
    frame_transform: FrameTransform | None = None,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    max_frames: int = 256,
    amp: bool | None = None,
    progress: bool = True,
    frame_cache: FrameCache | None = None,
    desc: str = "clip features",
    distributed: bool | None = None,
) -> FeatureBank:
    """Features of ``num_clips`` clips of ``clip_len`` frames of every tracklet.

    Args:
        model: an ``InceptionI3d`` (anything with ``extract_features``).
        tracklets: N objects with ``.frames``, ``.pid``, ``.camid``.
        num_clips: M.
        clip_len: L (ignored by ``"all"``).
        method: one of :data:`METHODS` (module docstring); ``"all"``: one tracklet at
            a time, in chunks of at most ``max_frames`` (``_all_frames_feature``).
        size: network input ``(height, width)``.
        seed: seed of the random sampling methods.
        frame_transform: optional hook ``(frames uint8 (L, H, W, 3), tracklet_idx,
            clip_idx) -> frames`` (the corruption of Sec. 4.4), applied to each clip
            after resizing to ``size`` (so "downscale by 5" means the same for every
            dataset) and before the [-1, 1] normalisation.
        device: torch device (default: the model's).
        batch_size: clips per forward pass (default 64 on CUDA, 32 on CPU).
        num_workers: frame-decoding threads (0: decode in the main thread).
        max_frames: ``"all"``: longest chunk fed to the network at once.
        amp: bf16 autocast; None: on CUDA only (``accel.use_amp``).
        progress: tqdm bar over tracklets (rank 0 only under ``torch.distributed``).
        frame_cache: optional decoded-frame cache.
        desc: the bar's label.
        distributed: None: when a ``torch.distributed`` group of several ranks is
            initialised, each rank extracts a contiguous shard and all ranks return the
            whole bank (``reid_utils.training.sharding``; every rank must call this);
            False: never shard.

    Returns:
        :class:`FeatureBank` with feats (N, M, D) on the CPU.
    """
    _check_extraction(tracklets, num_clips, clip_len, method, max_frames)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch_size = batch_size or (64 if device.type == "cuda" else 32)
    size = tuple(int(v) for v in size)
    all_idx = _all_clip_indices(tracklets, num_clips, clip_len, method, seed)
    rank, world = sharding.rank_and_world(distributed)
    unit = 1 if method == "all" else sharding.batch_unit(batch_size, num_clips)
    lo, hi = sharding.shard_bounds(len(tracklets), unit, rank, world)
    load = clip_loader(tracklets, all_idx, size, frame_cache, frame_transform, device)
    run = dict(device=device, amp=accel.use_amp(device, amp), batch_size=batch_size, max_frames=max_frames)
    bar = dict(desc=desc, disable=not progress or rank != 0, leave=False)
    feats = features_of(model, load, range(lo, hi), method, num_workers, run, bar)
    if hi > lo:
        feats = feats.reshape(hi - lo, num_clips, -1)
    else:  # an empty shard: the gather takes D from the other ranks
        feats = torch.zeros(0, num_clips, int(getattr(model, "feat_dim", 0)))
    out = sharding.gather_rows(feats) if world > 1 else feats.cpu()
    indices = all_idx if method == "all" else np.stack(all_idx).astype(np.int64)
    meta = {
        "method": method,
        "num_clips": num_clips,
        "clip_len": None if method == "all" else clip_len,
        "seed": int(seed) if method in RANDOM_METHODS else None,
        "size": size,
        "max_frames": max_frames if method == "all" else None,
    }
    pids = np.array([int(t.pid) for t in tracklets], dtype=np.int64)
    camids = np.array([int(t.camid) for t in tracklets], dtype=np.int64)
    return FeatureBank(feats=out.contiguous(), pids=pids, camids=camids, indices=indices, meta=meta)


def _check_extraction(tracklets: Sequence, num_clips: int, clip_len: int, method: str, max_frames: int) -> None:
    if len(tracklets) == 0:
        raise ValueError("extract_clip_features: tracklets is empty")
    if num_clips < 1 or (method != "all" and clip_len < 1):
        raise ValueError(f"extract_clip_features: num_clips={num_clips}, clip_len={clip_len}: expected >= 1")
    if max_frames < 1:
        raise ValueError(f"extract_clip_features: max_frames={max_frames}: expected >= 1")


def _all_clip_indices(tracklets: Sequence, num_clips: int, clip_len: int, method: str, seed: int) -> list:
    """The (M, L) frame indices of every tracklet's clips (tracklet i: rng ``[seed, i]``)."""
    all_idx = []
    for i, t in enumerate(tracklets):
        if len(t.frames) == 0:
            raise ValueError(f"extract_clip_features: tracklet {i} ({getattr(t, 'tid', '')}) has no frames")
        rng = np.random.default_rng([int(seed), i]) if method in RANDOM_METHODS else None
        all_idx.append(clip_indices(len(t.frames), num_clips, clip_len, method, rng))
    return all_idx


def get_features(
    cfg,
    model: torch.nn.Module,
    tracklets: Sequence,
    num_clips: int = 1,
    clip_len: int = 4,
    method: str = "clips",
    *,
    model_key: str,
    seed: int | None = None,
    frame_transform: FrameTransform | None = None,
    transform_key: str | None = None,
    name: str = "features",
    progress: bool = True,
    **kwargs,
) -> FeatureBank:
    """:func:`extract_clip_features`, cached on disk under ``cfg.cache_root``.

    The cache key (kind ``"features"``) is built from ``model_key``, the identity of
    the tracklet list (:func:`tracklets_key`), M, L, the method, the seed (random
    methods only), the input size, ``max_frames``, ``transform_key`` and, for bf16
    features (the CUDA default), the precision. Under ``torch.distributed`` with several
    ranks every rank must call this: the extraction is sharded and rank 0 writes the entry
    (``training.distributed.rank0_cached``).

    Args:
        cfg: ``Config`` (device, input size, seed, cache root, num_workers).
        model: the trained ``InceptionI3d`` (e.g. ``TrainedModel.model``).
        tracklets: N tracklets.
        num_clips, clip_len, method: see :func:`extract_clip_features`.
        model_key: identity of the weights (``TrainedModel.key``).
        seed: default ``cfg.seed``.
        frame_transform, transform_key: optional corruption hook and a string
            describing it (e.g. the corruption spec; required with the hook).
        name: cache entry name prefix (e.g. ``"features-query"``).
        progress: tqdm bar and cache messages.
        **kwargs: passed to :func:`extract_clip_features` (batch_size, amp,
            frame_cache (default ``loading.shared_frame_cache()``), ...).

    Returns:
        :class:`FeatureBank` with feats (N, M, D); meta includes ``"key"``.
    """
    if not model_key:
        raise ValueError("get_features: model_key is empty; expected the cache key of the weights (TrainedModel.key)")
    if frame_transform is not None and not transform_key:
        raise ValueError(
            "get_features: frame_transform given without transform_key; expected a "
            "string describing the transform (e.g. the corruption spec) for the cache key"
        )
    seed = cfg.seed if seed is None else seed
    size = input_size(cfg)
    device = cfg.torch_device()
    spec = {
        "model": model_key,
        "tracklets": tracklets_key(tracklets),
        "M": int(num_clips),
        "L": None if method == "all" else int(clip_len),
        "method": method,
        "seed": int(seed) if method in RANDOM_METHODS else None,
        "size": list(size),
        "transform": transform_key,
        "max_frames": kwargs.get("max_frames", 256),
    }
    if accel.use_amp(device, kwargs.get("amp")):  # fp32 entries keep their keys
        spec["precision"] = "bf16"
    kwargs.setdefault("num_workers", cfg.num_workers)
    kwargs.setdefault("frame_cache", shared_frame_cache())

    def compute() -> FeatureBank:
        desc = f"{name} M={num_clips} L={clip_len} {method}"
        kw = dict(size=size, seed=seed, frame_transform=frame_transform, device=device, desc=desc)
        bank = extract_clip_features(model, tracklets, num_clips, clip_len, method, progress=progress, **kw, **kwargs)
        bank.meta.update(key=artifact_key("features", spec), model_key=model_key, transform_key=transform_key)
        return bank

    if sharding.rank_and_world(kwargs.get("distributed"))[1] > 1:  # collective: every rank extracts
        return dist_utils.rank0_cached(cfg.cache_root, "features", spec, compute, verbose=progress, name=name)
    return cached(cfg.cache_root, "features", spec, compute, name=name, verbose=progress)
