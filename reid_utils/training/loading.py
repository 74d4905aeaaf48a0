"""Frame loading shared by the feature extractor (``reid_utils.training.features``) and
the I3D training (``reid_utils.training.i3d``): a decoded-frame cache that threads can
share, and an ordered map over a bounded number of decoding threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reid_utils.data.transforms import FrameCache

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
