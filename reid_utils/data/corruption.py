"""Input corruption of Sec. 4.4 (Fig. 5, Fig. 6, Table 2).

For every sequence a number M_c is drawn uniformly from {0, ..., M_c^max} and
M_c of its M clips are corrupted; a corrupted clip has every frame

1. downscaled by a factor of 5,
2. JPEG-compressed,
3. upscaled back to the original size.

Choices where the paper is silent (documented here once):

* **JPEG quality** 20 (Pillow's scale, 1-95; default 75). The paper does not
  state it; 20 gives the clearly visible blocking and ringing of Fig. 5.
* **Resampling**: Pillow ``BILINEAR`` both ways (Pillow's downscaling filter is
  antialiased, i.e. its support grows with the scale factor); the small size
  is ``max(1, round(side / 5))``.
* **Chroma subsampling**: Pillow's default for the quality (4:2:0).
* **Drawing M_c**: integer uniform on {0, ..., M_c^max} inclusive; then the
  M_c corrupted clips are drawn uniformly without replacement.

Corrupted clip features are computed once with the frozen I3D (clean and
corrupted versions of every clip), and each M_c^max experiment is assembled
from them by :func:`assemble_corrupted` with a :func:`corruption_plan`,
instead of re-running the network.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

__all__ = ["corrupt_frame", "corrupt_clip", "corruption_plan", "assemble_corrupted", "DOWNSCALE", "JPEG_QUALITY"]

DOWNSCALE = 5
JPEG_QUALITY = 20
_RESAMPLE = Image.Resampling.BILINEAR


def _check_frame(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"{name}: expected a uint8 array of shape (H, W, 3), got dtype {frame.dtype} and shape {frame.shape}"
        )
    return frame


def corrupt_frame(frame: np.ndarray, factor: int = DOWNSCALE, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Downscale by ``factor``, JPEG-compress at ``quality``, upscale back (Sec. 4.4).

    Args:
        frame: (H, W, 3) uint8 RGB.
        factor: downscaling factor (5 in the paper).
        quality: JPEG quality, 1-95 (the paper does not state it; see module doc).

    Returns:
        (H, W, 3) uint8 corrupted frame.
    """
    frame = _check_frame(frame, "frame")
    if int(factor) < 1:
        raise ValueError(f"factor: expected an integer >= 1, got {factor}")
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"quality: expected 1..95, got {quality}")
    h, w = frame.shape[:2]
    small = (max(1, round(w / factor)), max(1, round(h / factor)))
    img = Image.fromarray(frame).resize(small, _RESAMPLE)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as jpg:
        out = jpg.convert("RGB").resize((w, h), _RESAMPLE)
    return np.asarray(out, dtype=np.uint8)


def corrupt_clip(frames, factor: int = DOWNSCALE, quality: int = JPEG_QUALITY):
    """Corrupt every frame of a clip (Sec. 4.4).

    Args:
        frames: (T, H, W, 3) uint8 array, or a list of (H, W, 3) uint8 arrays.
        factor, quality: see :func:`corrupt_frame`.

    Returns:
        The same container type, shape and dtype as ``frames``.
    """
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(
                f"frames: expected a uint8 array of shape (T, H, W, 3), "
                f"got dtype {frames.dtype} and shape {frames.shape}"
            )
        if len(frames) == 0:
            return frames.copy()
        return np.stack([corrupt_frame(f, factor, quality) for f in frames])
    if isinstance(frames, (list, tuple)):
        return [corrupt_frame(_check_frame(f, f"frames[{i}]"), factor, quality) for i, f in enumerate(frames)]
    raise ValueError(
        f"frames: expected a (T, H, W, 3) uint8 array or a list of (H, W, 3) uint8 arrays, got {type(frames).__name__}"
    )


def corruption_plan(num_sequences: int, M: int, max_corrupted: int, seed: int | np.random.Generator) -> np.ndarray:
    """Which clips of each sequence are corrupted (Sec. 4.4).

    Per sequence, M_c ~ Uniform{0, ..., max_corrupted} and M_c of its M clips
    are chosen uniformly without replacement.

    Args:
        num_sequences: N.
        M: clips per sequence.
        max_corrupted: M_c^max, in [0, M].
        seed: int seed (deterministic plan) or a numpy Generator.

    Returns:
        (N, M) bool array, True = corrupted clip.
    """
    if int(num_sequences) < 0:
        raise ValueError(f"num_sequences: expected >= 0, got {num_sequences}")
    if int(M) < 1:
        raise ValueError(f"M: expected >= 1, got {M}")
    if not 0 <= int(max_corrupted) <= int(M):
        raise ValueError(f"max_corrupted: expected 0 <= M_c^max <= M = {M}, got {max_corrupted}")
    N, M, mc = int(num_sequences), int(M), int(max_corrupted)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    counts = rng.integers(0, mc + 1, size=N)
    # a uniformly random permutation per row; its first M_c entries are corrupted
    ranks = np.argsort(rng.random((N, M)), axis=1).argsort(axis=1)
    return ranks < counts[:, None]


def assemble_corrupted(clean, corrupted, plan):
    """Per-clip choice between clean and corrupted features.

    Args:
        clean: (N, M, D) clean clip features (torch or numpy).
        corrupted: (N, M, D) features of the corrupted clips, same type.
        plan: (N, M) bool, True = take the corrupted clip.

    Returns:
        (N, M, D) features, same type as ``clean``.
    """
    is_np = not torch.is_tensor(clean)
    c = torch.as_tensor(clean)
    x = torch.as_tensor(corrupted)
    p = torch.as_tensor(np.asarray(plan) if not torch.is_tensor(plan) else plan)
    if c.dim() != 3 or x.shape != c.shape:
        raise ValueError(
            f"clean, corrupted: expected two arrays of the same shape (N, M, D), "
            f"got {tuple(c.shape)} and {tuple(x.shape)}"
        )
    if p.dtype != torch.bool or tuple(p.shape) != tuple(c.shape[:2]):
        raise ValueError(f"plan: expected a bool array of shape {tuple(c.shape[:2])}, got {p.dtype} {tuple(p.shape)}")
    out = torch.where(p.to(c.device)[..., None], x.to(c.device, c.dtype), c)
    return out.numpy() if is_np else out
