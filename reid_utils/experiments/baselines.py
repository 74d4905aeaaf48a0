"""A non-learned video re-ID baseline: colour histograms averaged over a tracklet.

Purpose: calibrate the difficulty of a benchmark (notebook 00). The paper (Sec. 1-2)
builds on learned 3D-CNN features; hand-crafted colour descriptors are the classic
pre-deep-learning baseline for person re-ID, and on a benchmark where colour alone
identified people the learned methods of the paper would have nothing to show.
``reid_utils.synth`` is tuned so that this baseline stays well below 50 % mAP on the
default synthetic set.

Descriptor (none of its choices from the paper): every frame is resized, converted
to HSV and cut into horizontal stripes (roughly head/torso/legs), each with a joint
HSV histogram normalised per stripe. Pixels are weighted by a Gaussian of the
horizontal distance to the box centre, the classical background suppression of
hand-crafted descriptors (e.g. SDALF's symmetry axis, Farenzena et al., CVPR 2010):
without it the camera's background dominates and same-camera gallery items outrank
every true cross-camera match. Grey-world colour correction counters camera colour
casts. The frame histograms are averaged over the tracklet, square-rooted
(Hellinger) and L2-normalised, so Euclidean distance ranks the gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from reid_utils.cache import cached
from reid_utils.data.datasets import id_arrays
from reid_utils.eval.distances import euclidean_distance
from reid_utils.eval.ranking import evaluate_rank, protocol_of
from reid_utils.training.features import tracklets_key


def _load_rgb(path, size: tuple[int, int]) -> np.ndarray:
    """One frame as uint8 RGB (H, W, 3), resized to ``size``."""
    h, w = size
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (w, h))  # fast DCT downscale of large JPEGs
            im = im.convert("RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            return np.asarray(im)
    except (OSError, ValueError) as e:
        raise ValueError(f"color_histogram_features: cannot read frame {path}: {e}") from None


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Vectorised RGB -> HSV; float arrays (..., 3) in [0, 1] -> (..., 3) in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = np.maximum(np.maximum(r, g), b)
    d = mx - np.minimum(np.minimum(r, g), b)
    safe = np.where(d > 0, d, 1.0)
    h = np.where(mx == r, (g - b) / safe, np.where(mx == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(d > 0, (h / 6.0) % 1.0, 0.0)
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def _evenly(n: int, k: int | None) -> np.ndarray:
    if k is None or n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(int))


def color_histogram_features(
    frame_paths_per_tracklet: Sequence[Sequence[str | Path]],
    bins: tuple[int, int, int] = (8, 3, 3),
    stripes: int = 3,
    size: tuple[int, int] = (64, 32),
    max_frames: int | None = None,
    center_sigma: float | None = 0.15,
    grey_world: bool = True,
    progress: bool = False,
) -> np.ndarray:
    """Colour-histogram descriptors of tracklets (the recipe is in the module docstring).

    Args:
        frame_paths_per_tracklet: N sequences of frame paths (temporal order
            does not matter).
        bins: joint HSV bins (hue, saturation, value).
        stripes: horizontal bands, each with its own histogram.
        size: (H, W) every frame is resized to.
        max_frames: use at most this many evenly spaced frames per tracklet.
        center_sigma: std of the horizontal Gaussian pixel weight, as a
            fraction of the width (``None``: all pixels weigh the same).
        grey_world: divide each frame's channels by their (weighted) means
            (grey-world colour constancy) before the histogram.
        progress: show a tqdm bar.

    Returns:
        float32 array (N, stripes * prod(bins)); rows have unit L2 norm.

    Raises:
        ValueError: an empty tracklet, bad ``bins``/``stripes``/``size`` or an
            unreadable frame (the message names it).
    """
    from tqdm.auto import tqdm

    bh, bs, bv = (int(b) for b in bins)
    if min(bh, bs, bv) < 1 or max(bh, bs, bv) > 256:
        raise ValueError(f"bins: expected three ints in 1..256, got {bins!r}")
    H, W = (int(x) for x in size)
    if not 1 <= stripes <= H:
        raise ValueError(f"stripes: expected 1..{H}, got {stripes!r}")
    if center_sigma is not None and not center_sigma > 0:
        raise ValueError(f"center_sigma: expected a positive float or None, got {center_sigma!r}")
    nb = bh * bs * bv
    F = stripes * nb
    band = (np.arange(H) * stripes // H).astype(np.int64)[:, None]  # (H, 1)
    xs = (np.arange(W) + 0.5) / W - 0.5
    wx = np.ones(W) if center_sigma is None else np.exp(-0.5 * (xs / center_sigma) ** 2)
    wpix = np.broadcast_to(wx[None, :], (H, W))  # (H, W)
    out = np.zeros((len(frame_paths_per_tracklet), F), np.float64)
    it = tqdm(frame_paths_per_tracklet, desc="colour histograms", unit="tracklet", disable=not progress)
    for i, paths in enumerate(it):
        paths = list(paths)
        if not paths:
            raise ValueError(f"color_histogram_features: tracklet {i} has no frames")
        sel = _evenly(len(paths), max_frames)
        rgb = np.stack([_load_rgb(paths[j], (H, W)) for j in sel]).astype(np.float32) / 255.0
        if grey_world:  # per-frame channel gains: removes a global colour cast
            m = np.einsum("nhwc,hw->nc", rgb, wpix / wpix.sum(), optimize=True)  # (n, 3)
            rgb = np.clip(rgb * (0.45 / np.maximum(m, 1e-3))[:, None, None, :], 0, 1)
        hsv = rgb_to_hsv(rgb)
        q = [np.minimum((hsv[..., c] * k).astype(np.int64), k - 1) for c, k in enumerate((bh, bs, bv))]
        idx = (q[0] * bs + q[1]) * bv + q[2]
        idx = idx + band * nb  # (n, H, W)
        out[i] = np.bincount(idx.ravel(), weights=np.broadcast_to(wpix, idx.shape).ravel(), minlength=F)
    counts = np.bincount(
        np.broadcast_to(band, (H, W)).ravel(), weights=wpix.ravel(), minlength=stripes
    )  # weight per band
    # per-frame band normalisation commutes with the tracklet average
    nfr = np.asarray([len(_evenly(len(p), max_frames)) for p in frame_paths_per_tracklet], np.float64)
    out = out / (np.repeat(counts, nb)[None, :] * nfr[:, None])
    out = np.sqrt(out)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


def color_histogram_baseline(
    dataset, protocol: str = "torchreid", max_rank: int = 20, progress: bool = True, **feature_kwargs
) -> dict:
    """Evaluate the colour-histogram baseline on a loaded dataset.

    Args:
        dataset: a ``reid_utils.data.datasets.VideoDataset`` (``.query``/``.gallery``
            with ``.frames``, ``.pid``, ``.camid``).
        protocol: passed to ``reid_utils.eval.ranking.evaluate_rank``.
        **feature_kwargs: passed to :func:`color_histogram_features`.

    Returns:
        dict with ``mAP``, ``cmc`` (max_rank,), ``rank1``, ``rank5``,
        ``distmat`` (Q, G), ``protocol``.
    """
    qf = color_histogram_features([t.frames for t in dataset.query], progress=progress, **feature_kwargs)
    gf = color_histogram_features([t.frames for t in dataset.gallery], progress=progress, **feature_kwargs)
    dist = euclidean_distance(qf, gf)
    q_pids, q_camids = id_arrays(dataset.query)
    g_pids, g_camids = id_arrays(dataset.gallery)
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, protocol=protocol)
    return {
        "mAP": float(mAP),
        "cmc": np.asarray(cmc),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(4, len(cmc) - 1)]),
        "distmat": dist,
        "protocol": protocol,
    }


def cached_color_histogram_baseline(cfg, dataset, progress: bool = False) -> dict:
    """:func:`color_histogram_baseline` of ``dataset`` (its own protocol), cached.

    Notebook 00 calibrates the benchmark with it and notebook 01 reports it beside
    the I3D: both read one cached result (``reid_utils.cache.cached``, kind
    ``"baseline-color"``, keyed by the query/gallery tracklets and the protocol).

    Returns:
        The dict of :func:`color_histogram_baseline`.
    """
    protocol = protocol_of(dataset)
    spec = {"query": tracklets_key(dataset.query), "gallery": tracklets_key(dataset.gallery), "protocol": protocol}
    return cached(
        cfg.cache_root,
        "baseline-color",
        spec,
        lambda: color_histogram_baseline(dataset, protocol, progress=progress),
        verbose=progress,
    )
