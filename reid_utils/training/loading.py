"""Frame loading shared by the feature extractor (``reid_utils.training.features``) and
the I3D training (``reid_utils.training.i3d``): a decoded-frame cache that threads can
share, an ordered map over a bounded number of decoding threads, and the per-tracklet
clip loader of the feature extractor, which decodes into (on CUDA: page-locked) uint8
buffers (``reid_utils.training.accel``). Decoding throughput: ``benchmarks/bench_decode.py``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from reid_utils.data.transforms import FrameCache, load_frames
from reid_utils.training.accel import pinned_empty

_SHARED_FRAME_CACHE: FrameCache | None = None


class LockedFrameCache(FrameCache):
    """A :class:`reid_utils.data.transforms.FrameCache` safe to share between decoding threads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return super().get(key)

    def put(self, key, arr) -> None:
        with self._lock:
            super().put(key, arr)


def shared_frame_cache() -> FrameCache:
    """The process-wide decoded-frame cache ``features.get_features`` uses by default.

    Notebooks extract features of the same test tracklets many times (methods x clip
    lengths x models); decoding each frame once saves most of the I/O.
    """
    global _SHARED_FRAME_CACHE
    if _SHARED_FRAME_CACHE is None:
        _SHARED_FRAME_CACHE = LockedFrameCache()
    return _SHARED_FRAME_CACHE


def bounded_map(fn: Callable[[Any], Any], items: Iterable, workers: int, ahead: int) -> Iterator:
    """``map(fn, items)`` in order, on ``workers`` threads (0: in the calling thread), with
    at most ``ahead`` results pending."""
    if workers <= 0:
        for it in items:
            yield fn(it)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for it in items:
            pending.append(pool.submit(fn, it))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def clip_loader(tracklets, all_idx: list, size, frame_cache, frame_transform, device):
    """``load(i) -> uint8 (M, L, H, W, 3)``: the M clips of tracklet i (frame indices
    ``all_idx[i]`` (M, L)), each frame decoded once, resized to ``size`` and passed through
    ``frame_transform(frames, i, m)`` when given; written into a buffer that is page-locked
    when ``device`` is CUDA. ``accel.network_input`` turns a batch of them into the network
    input."""

    def load(i: int) -> torch.Tensor:
        t, idx = tracklets[i], all_idx[i]
        uniq, inv = np.unique(idx, return_inverse=True)
        frames = load_frames([t.frames[k] for k in uniq], size, frame_cache)
        out = pinned_empty((*idx.shape, *frames.shape[1:]), torch.uint8, device)
        arr = out.numpy()
        for m, row in enumerate(inv.reshape(idx.shape)):
            clip = frames[row]
            if frame_transform is not None:
                clip = checked_frames(frame_transform(clip, i, m), clip.shape, i, m)
            arr[m] = clip
        return out

    return load


def checked_frames(frames, shape, i: int, m: int) -> np.ndarray:
    """``frames`` as a numpy array, if it is uint8 of ``shape`` (what a ``frame_transform``
    of tracklet i, clip m must return); else a ValueError naming the hook."""
    frames = np.asarray(frames)
    if frames.shape != shape or frames.dtype != np.uint8:
        raise ValueError(
            f"frame_transform(tracklet {i}, clip {m}) returned {frames.dtype} "
            f"{frames.shape}; expected uint8 {shape} like its input"
        )
    return frames
