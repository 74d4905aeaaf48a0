"""Frame loading and normalisation for the I3D input (Sec. 4.2).

The I3D takes a clip of L RGB frames of size H x W (256 x 128 in the paper)
with values in [-1, 1], layout (C, T, H, W) per clip and (B, C, T, H, W) per
batch. Frames are decoded with Pillow, converted to RGB, resized bilinearly to
``size = (height, width)`` (the profile's ``cfg.model.input_height x
input_width``, see :func:`input_size`) and mapped ``x / 127.5 - 1``.

An optional :class:`FrameCache` keeps decoded, resized uint8 frames in memory
(least-recently-used eviction under a byte budget), which pays off when the
same tracklets are read every epoch. An undecodable or missing frame raises
``reid_utils.data.tracklets.DatasetError`` naming the file.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from reid_utils.data.sampling import sample_clip
from reid_utils.data.tracklets import DatasetError, Tracklet


def input_size(cfg) -> tuple[int, int]:
    """``(height, width)`` of the network input for a ``Config``."""
    return int(cfg.model.input_height), int(cfg.model.input_width)


class FrameCache:
    """LRU cache of decoded, resized uint8 frames keyed by ``(path, size, file size, mtime)``.

    Args:
        max_bytes: evict least-recently-used frames beyond this many bytes.
    """

    def __init__(self, max_bytes: int = 512 * 2**20):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key):
        arr = self._data.get(key)
        if arr is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return arr

    def put(self, key, arr: np.ndarray) -> None:
        if key in self._data or arr.nbytes > self.max_bytes:
            return
        arr.setflags(write=False)
        self._data[key] = arr
        self.nbytes += arr.nbytes
        while self.nbytes > self.max_bytes:
            _, old = self._data.popitem(last=False)
            self.nbytes -= old.nbytes

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self.nbytes = 0


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size={size!r}: expected (height, width) or None") from None
    if h < 1 or w < 1:
        raise ValueError(f"size={size!r}: expected positive (height, width)")
    return h, w


def load_frame(path: str, size=None, cache: FrameCache | None = None) -> np.ndarray:
    """Decode one frame to RGB uint8.

    Args:
        path: image file.
        size: ``(height, width)`` to resize to (bilinear), or None to keep it.
        cache: optional :class:`FrameCache`.

    Returns:
        uint8 array (H, W, 3).

    Raises:
        DatasetError: the file is missing or cannot be decoded.
    """
    from PIL import Image

    size = _check_size(size)
    key = None
    if cache is not None:  # keyed by the file's size and mtime too: a frame replaced in place is re-read
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DatasetError(f"{path} does not exist: expected a frame image") from None
        key = (str(path), size, st.st_size, st.st_mtime_ns)
        hit = cache.get(key)
        if hit is not None:
            return hit
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist: expected a frame image") from None
    except Exception as e:  # PIL raises several types for broken files
        raise DatasetError(
            f"{path} cannot be decoded as an image ({type(e).__name__}: {e}); expected a JPEG/PNG frame"
        ) from None
    if cache is not None:
        cache.put(key, arr)
    return arr


def load_frames(paths: Sequence[str], size=None, cache: FrameCache | None = None) -> np.ndarray:
    """Decode T frames to a uint8 array (T, H, W, 3) (all must share a size if ``size`` is None)."""
    if len(paths) == 0:
        raise ValueError("paths: expected at least one frame path")
    frames = [load_frame(p, size, cache) for p in paths]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DatasetError(
            f"frames of different sizes {sorted(shapes)} (first: {paths[0]}); pass size=(height, width) to resize them"
        )
    return np.stack(frames)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (3, T, H, W) in [-1, 1]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()
    return x.div_(127.5).sub_(1.0)


def tensor_to_frames(clip: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`frames_to_tensor`: (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    if clip.ndim != 4 or clip.shape[0] != 3:
        raise ValueError(f"clip: expected (3, T, H, W), got {tuple(clip.shape)}")
    x = ((clip.detach().float().cpu() + 1.0) * 127.5).round().clamp_(0, 255)
    return x.to(torch.uint8).permute(1, 2, 3, 0).numpy()


def load_clip(paths: Sequence[str], size=None, cache: FrameCache | None = None) -> torch.Tensor:
    """Load one clip.

    Args:
        paths: T frame paths in temporal order (repeats allowed).
        size: ``(height, width)``, e.g. :func:`input_size` of the config.
        cache: optional :class:`FrameCache`.

    Returns:
        float32 tensor (3, T, H, W) in [-1, 1].
    """
    return frames_to_tensor(load_frames(paths, size, cache))


def load_clips(
    clips: Sequence[Sequence[str]],
    size=None,
    progress: bool = True,
    cache: FrameCache | None = None,
    desc: str = "loading clips",
) -> torch.Tensor:
    """Load B clips of equal length T into one batch.

    Args:
        clips: B lists of T frame paths each.
        size: ``(height, width)``; required unless all frames share a size.
        progress: show a tqdm bar (only when there are more than 8 clips).
        cache: optional :class:`FrameCache`.

    Returns:
        float32 tensor (B, 3, T, H, W) in [-1, 1].
    """
    from tqdm.auto import tqdm

    if len(clips) == 0:
        raise ValueError("clips: expected at least one clip")
    lens = {len(c) for c in clips}
    if len(lens) != 1:
        raise ValueError(f"clips: expected equal clip lengths, got lengths {sorted(lens)}")
    it = tqdm(clips, desc=desc, disable=not progress or len(clips) <= 8, leave=False)
    out = [load_clip(c, size, cache) for c in it]
    shapes = {tuple(x.shape) for x in out}
    if len(shapes) != 1:
        raise DatasetError(f"clips of different frame sizes {sorted(shapes)}; pass size=(height, width)")
    return torch.stack(out)


def clip_paths(tracklet: Tracklet, indices: Sequence[int]) -> list[str]:
    """Frame paths of ``tracklet`` at ``indices`` (e.g. from ``reid_utils.data.sampling.sample_clip``)."""
    n = len(tracklet.frames)
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"indices {idx.min()}..{idx.max()} outside tracklet {tracklet.tid} of {n} frames")
    return [tracklet.frames[i] for i in idx]


def thumbnails(
    tracklet, num: int = 8, size=None, indices: Sequence[int] | None = None, cache: FrameCache | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A few frames of a tracklet for figures (contact sheets, sampling plots).

    Args:
        tracklet: a :class:`Tracklet` or a sequence of frame paths.
        num: number of frames, evenly spaced (``sample_clip(..., "evenly")``;
            fewer if the tracklet is shorter); ignored when ``indices`` given.
        size: ``(height, width)`` or None for the native size.
        indices: explicit frame indices.

    Returns:
        (indices int64 (k,), list of k uint8 arrays (H, W, 3)).
    """
    paths = tracklet.frames if isinstance(tracklet, Tracklet) else tuple(tracklet)
    if indices is None:
        idx = sample_clip(len(paths), min(int(num), len(paths)), "evenly")
    else:
        idx = np.asarray(indices, dtype=np.int64)
    return idx, [load_frame(paths[i], size, cache) for i in idx]


def augment_params(rng: np.random.Generator, color_jitter: float, random_erasing: float) -> dict:
    """Random parameters of :func:`augment_clip` for one clip (drawn from ``rng``).

    Colour jitter: per-channel gains ``1 + U(-j, j)`` and one offset ``U(-j, j)/2``
    (in [-1, 1] units): a camera's colour cast and exposure, which the
    synthetic benchmark varies per camera and a real multi-camera set varies too.
    Random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020;
    used by the strong re-ID baselines): with probability ``random_erasing``, one
    box of 2-40 % of the frame area and aspect ratio 0.3-3.3 is replaced by
    uniform noise in every frame of the clip (the same box over time, like an
    occluder).
    """
    p = {"gain": np.ones(3, np.float32), "offset": 0.0, "box": None}
    if color_jitter > 0:
        p["gain"] = (1.0 + rng.uniform(-color_jitter, color_jitter, 3)).astype(np.float32)
        p["offset"] = float(rng.uniform(-color_jitter, color_jitter) / 2)
    if random_erasing > 0 and rng.random() < random_erasing:
        area = rng.uniform(0.02, 0.4)
        aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
        p["box"] = (area, aspect, float(rng.random()), float(rng.random()), int(rng.integers(2**31)))
    return p


def augment_clip(x: torch.Tensor, params: dict) -> torch.Tensor:
    """Apply :func:`augment_params`'s colour jitter and erasing to one clip.

    Args:
        x: (3, T, H, W) float in [-1, 1] (:func:`frames_to_tensor`).
        params: from :func:`augment_params`.

    Returns:
        (3, T, H, W) float in [-1, 1]; a new tensor.
    """
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"augment_clip: expected (3, T, H, W), got {tuple(x.shape)}")
    gain = torch.from_numpy(params["gain"]).view(3, 1, 1, 1)
    y = ((x + 1) * gain - 1 + params["offset"]).clamp_(-1, 1)
    if params["box"] is not None:
        area, aspect, fy, fx, seed = params["box"]
        H, W = y.shape[-2:]
        h = min(H, max(1, int(round((area * H * W * aspect) ** 0.5))))
        w = min(W, max(1, int(round((area * H * W / aspect) ** 0.5))))
        y0, x0 = int(fy * (H - h)), int(fx * (W - w))
        g = torch.Generator().manual_seed(seed)
        y[:, :, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, h, w, generator=g) * 2 - 1
    return y
