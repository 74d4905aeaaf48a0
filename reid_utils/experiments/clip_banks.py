"""The frozen clip features of the aggregation experiments (Secs. 3.1-3.2, 4.4; Fig. 5).

* The frozen I3D (:func:`get_backbone`), trained with L_train = ``cfg.agg.clip_len``.
* Its clip-feature banks (:func:`get_clip_banks`): M clips of L frames per tracklet
  (``reid_utils.training.features.get_features``, method ``"clips"``) of train / query /
  gallery; clean, and optionally with *every* clip corrupted
  (``reid_utils.data.corruption.corrupt_clip`` as the ``frame_transform``). Cached.
* :class:`ClipBanks` bundles them with the config: an M_c^max experiment never re-runs the
  I3D; its test features (:meth:`ClipBanks.features`) are assembled from the two banks by a
  :func:`test_plan` that is deterministic per (seed, split, M_c^max).
* Fig. 5 (:func:`corruption_examples`) and how far corruption moves a clip feature
  (:func:`corruption_shift`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from reid_utils.config import Config
from reid_utils.data.corruption import DOWNSCALE, JPEG_QUALITY, assemble_corrupted, corrupt_clip, corruption_plan
from reid_utils.training.features import FeatureBank, get_features
from reid_utils.training.result import TrainedModel

__all__ = [
    "SPLITS",
    "VAL_SPLITS",
    "split_tracklets",
    "CORRUPTION_KEY",
    "ClipBanks",
    "get_backbone",
    "get_clip_banks",
    "test_plan",
    "corruption_examples",
    "corruption_shift",
]

SPLITS = ("train", "query", "gallery")
VAL_SPLITS = ("val_query", "val_gallery")  # the held-out identities (reid_utils.data.validation)
_SPLIT_CODE = {"train": 0, "query": 1, "gallery": 2, "val_query": 3, "val_gallery": 4}
CORRUPTION_KEY = f"corrupt_clip(downscale={DOWNSCALE},jpeg_quality={JPEG_QUALITY})"


def test_plan(cfg, split: str, num_sequences: int, max_corrupted: int) -> np.ndarray:
    """The fixed corruption plan of a test split at one M_c^max (Sec. 4.4).

    Deterministic per ``(split, max_corrupted)``: every method of a level, and every
    training seed (``cfg.seed`` varies the training only, ``experiments.seed_sweep``), is
    evaluated on the same corrupted test set, and a re-run gives it again. M_c ~
    U{0..M_c^max} per sequence (``reid_utils.data.corruption.corruption_plan``).

    Returns:
        (N, M) bool, True = corrupted clip (M = ``cfg.agg.num_clips``).
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([0, 45, _SPLIT_CODE[split], int(max_corrupted)])
    return corruption_plan(num_sequences, cfg.agg.num_clips, int(max_corrupted), rng)


@dataclass(frozen=True, eq=False)
class ClipBanks:
    """The clip-feature banks of one experiment, with the config they belong to.

    Attributes:
        cfg: ``Config`` (seed, ``cfg.agg``, ``cache_root``).
        clean: ``{split: FeatureBank}`` for :data:`SPLITS` (and :data:`VAL_SPLITS` when the
            dataset has a validation set), feats (N, M, D).
        corrupted: the same with every clip corrupted, aligned clip by clip with
            ``clean``; None when only clean features are needed (M_c^max = 0).
    """

    cfg: Config
    clean: dict[str, FeatureBank]
    corrupted: dict[str, FeatureBank] | None = None

    def corrupted_bank(self, split: str, level: int) -> FeatureBank:
        """The corrupted bank of ``split``; raises when it was not extracted."""
        if self.corrupted is None:
            raise ValueError(f"corrupted: needed for max_corrupted={level} > 0")
        return self.corrupted[split]

    @property
    def has_validation(self) -> bool:
        """Whether the validation banks (:data:`VAL_SPLITS`) are there."""
        return all(s in self.clean for s in VAL_SPLITS)

    def plan(self, split: str, level: int) -> np.ndarray:
        """(N, M) bool :func:`test_plan` of ``split`` at M_c^max = ``level``."""
        return test_plan(self.cfg, split, len(self.clean[split]), level)

    def features(self, split: str, level: int) -> torch.Tensor:
        """(N, M, D) test features of ``split`` at M_c^max = ``level`` (the clean bank at 0)."""
        bank = self.clean[split]
        if int(level) == 0:
            return bank.feats
        bad = self.corrupted_bank(split, level)
        return assemble_corrupted(bank.feats, bad.feats, self.plan(split, level))


def get_backbone(cfg, dataset=None, progress: bool = True) -> TrainedModel:
    """The frozen I3D of Sec. 4.4, trained with L_train = ``cfg.agg.clip_len`` (cache or now).

    Returns:
        ``TrainedModel``: ``.model`` the eval-mode ``InceptionI3d``, ``.key`` its cache key.
    """
    from reid_utils.training.i3d import get_trained_i3d

    return get_trained_i3d(cfg, clip_len=cfg.agg.clip_len, dataset=dataset, progress=progress)


def _corrupt_all(frames: np.ndarray, tracklet_idx: int, clip_idx: int) -> np.ndarray:
    return corrupt_clip(frames)


def split_tracklets(dataset) -> dict[str, list]:
    """``{split: tracklets}`` of :data:`SPLITS`, plus :data:`VAL_SPLITS` when the dataset
    holds a validation set (``dataset.meta["validation"]``, ``cfg.val_ids`` > 0)."""
    out = {split: getattr(dataset, split) for split in SPLITS}
    val = getattr(dataset, "meta", {}).get("validation")
    if val is not None:
        out.update(val_query=val.query, val_gallery=val.gallery)
    return out


def _split_banks(cfg, backbone: TrainedModel, dataset, corrupted: bool, progress: bool) -> dict[str, FeatureBank]:
    out = {}
    for split, tracklets in split_tracklets(dataset).items():
        out[split] = get_features(
            cfg,
            backbone.model,
            tracklets,
            num_clips=cfg.agg.num_clips,
            clip_len=cfg.agg.clip_len,
            method="clips",
            frame_transform=_corrupt_all if corrupted else None,
            transform_key=CORRUPTION_KEY if corrupted else None,
            name=f"aggfeat-{split}{'-corrupted' if corrupted else ''}",
            progress=progress,
            model_key=backbone.key,
        )
    return out


def get_clip_banks(cfg, backbone: TrainedModel, dataset, corrupted: bool = False, progress: bool = True) -> ClipBanks:
    """Clip features of train / query / gallery, clean (and corrupted), from the cache or now.

    Args:
        cfg: ``Config`` (``cfg.agg.num_clips`` = M, ``cfg.agg.clip_len`` = L).
        backbone: the frozen I3D (:func:`get_backbone`).
        dataset: its ``.train``, ``.query``, ``.gallery`` tracklets.
        corrupted: also extract the banks with *every* clip corrupted
            (``reid_utils.data.corruption.corrupt_clip``, after the clean ones); an
            M_c^max experiment then picks clean or corrupted per clip.
        progress: tqdm bars and cache messages.

    Returns:
        :class:`ClipBanks`; the clean and corrupted banks of a split use the same frames
        (method ``"clips"`` is deterministic), so they are aligned clip by clip.
    """
    clean = _split_banks(cfg, backbone, dataset, False, progress)
    bad = _split_banks(cfg, backbone, dataset, True, progress) if corrupted else None
    return ClipBanks(cfg, clean, bad)


def corruption_examples(cfg, tracklets: Sequence, num: int = 3, seed: int = 0) -> list:
    """Clean and corrupted versions of one clip of a few tracklets (Fig. 5).

    Picks ``num`` tracklets at random (``seed``), takes the middle one of their M clips
    (``reid_utils.data.sampling.sample_clips``) at the network input size, and corrupts it
    with ``reid_utils.data.corruption.corrupt_clip``.

    Returns:
        list of ``(tracklet, clean (L, H, W, 3) uint8, corrupted (L, H, W, 3) uint8)``.
    """
    from reid_utils.data.sampling import sample_clips
    from reid_utils.data.transforms import input_size, load_frames

    if not len(tracklets):
        raise ValueError("tracklets: expected at least one tracklet")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(tracklets), size=min(num, len(tracklets)), replace=False)
    out = []
    for i in pick:
        t = tracklets[int(i)]
        clips = sample_clips(len(t.frames), cfg.agg.num_clips, cfg.agg.clip_len)
        idx = clips[len(clips) // 2]
        clean = load_frames([t.frames[k] for k in idx], input_size(cfg))
        out.append((t, clean, corrupt_clip(clean)))
    return out


def corruption_shift(clean: FeatureBank, corrupted: FeatureBank, seed: int = 0, num_pairs: int = 20000) -> pd.DataFrame:
    """How far corruption moves a clip feature, against the spread of clean features.

    Args:
        clean, corrupted: aligned banks of one split, feats (N, M, D).
        seed, num_pairs: random clip pairs compared.

    Returns:
        DataFrame (rows: comparisons, columns: mean, std of the cosine): a clip vs its own
        corrupted version; two clean clips of the same sequence; two clean clips of
        different sequences; two corrupted clips of different sequences (if corruption
        collapses features towards a common "blurry" direction, this is high - the trap
        for averaging).
    """
    import torch.nn.functional as F

    c = F.normalize(clean.feats, dim=-1)
    x = F.normalize(corrupted.feats, dim=-1)
    N, M, _ = c.shape
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, N, num_pairs), rng.integers(0, N, num_pairs)
    keep = a != b
    a, b = a[keep], b[keep]
    i, j = rng.integers(0, M, len(a)), rng.integers(0, M, len(a))
    j2 = (i + 1 + rng.integers(0, max(1, M - 1), len(a))) % M  # another clip of the same sequence
    rows = {
        "clip vs its corrupted version": (c * x).sum(-1).flatten(),
        "clean clips, same sequence": (c[a, i] * c[a, j2]).sum(-1),
        "clean clips, different sequences": (c[a, i] * c[b, j]).sum(-1),
        "corrupted clips, different sequences": (x[a, i] * x[b, j]).sum(-1),
    }
    return pd.DataFrame({k: {"mean cosine": float(v.mean()), "std": float(v.std())} for k, v in rows.items()}).T
