"""Frame, clip and batch sampling (Table 1, Sec. 3.1, Sec. 3.2, Sec. 4.3).

* :func:`sample_clip` - one clip of L frame indices from a sequence of T
  frames with one of the frame sampling methods of Table 1 / Sec. 4.3:

  - ``consec``: L consecutive frames from a uniformly random start (the
    method used to train the I3D, Sec. 4.3);
  - ``random``: L distinct frames drawn uniformly at random, in temporal order;
  - ``evenly``: L frames evenly spaced over the whole sequence, deterministic:
    the middle frame of each of L equal segments, ``floor((2i + 1) T / (2L))``;
  - ``all``: every frame (the only method whose length is T, not L).

  The paper does not say what happens when T < L. Choice made here: every
  method except ``all`` returns the *stretched* sequence
  ``floor((2i + 1) T / (2L))``, each frame repeated about L/T times in temporal
  order (a slowed-down replay rather than looping back to the start).

* :func:`sample_clips` - M clips of L consecutive frames spread uniformly over
  the sequence (Sec. 3.1), overlapping (evenly) when T < M L, as the paper allows.

* :func:`pk_batch` / :class:`PKSampler` - P x K identity batches (Sec. 3.2,
  following Hermans et al. [11]): P distinct identities, K tracklets each,
  sampled without replacement unless an identity has fewer than K tracklets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

METHODS = ("consec", "random", "evenly", "all")


def _check_pos_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng={rng!r}: expected a numpy Generator (or an int seed) for a random sampling method")


def _evenly(num_frames: int, length: int) -> np.ndarray:
    i = np.arange(length, dtype=np.int64)
    return ((2 * i + 1) * num_frames) // (2 * length)


def sample_clip(
    num_frames: int, length: int, method: str = "evenly", rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Frame indices of one clip (Table 1); T < L gives the stretched sequence (module docstring).

    Args:
        num_frames: T, the sequence length (>= 1).
        length: L, the clip length (>= 1); ignored by ``all``.
        method: ``consec``, ``random``, ``evenly`` or ``all``.
        rng: numpy Generator (or int seed); required by ``consec`` and
            ``random``, unused by ``evenly`` and ``all``.

    Returns:
        int64 array of shape (L,) (``all``: (T,)), values in [0, T), non-decreasing.
    """
    n = _check_pos_int(num_frames, "num_frames")
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    if method == "all":
        return np.arange(n, dtype=np.int64)
    L = _check_pos_int(length, "length")
    if method in ("consec", "random"):
        rng = _as_rng(rng)
    if method == "evenly" or n < L:
        return _evenly(n, L)
    if method == "consec":
        start = int(rng.integers(0, n - L + 1))
        return np.arange(start, start + L, dtype=np.int64)
    return np.sort(rng.choice(n, size=L, replace=False)).astype(np.int64)


def sample_clips(
    num_frames: int, num_clips: int, length: int, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """M clips of L consecutive frames spread uniformly over a sequence (Sec. 3.1).

    The sequence is cut into M equal segments and clip i is centred in segment i;
    clips therefore do not overlap when T >= M L and overlap (evenly) when T < M L.
    With an ``rng`` each clip start is instead drawn uniformly among the starts that
    keep the clip inside its segment (when the segment holds L frames) or that keep
    the segment's centre frame inside the clip (otherwise): a training-time jitter.

    Args:
        num_frames: T (>= 1).
        num_clips: M (>= 1).
        length: L (>= 1).
        rng: ``None`` for the deterministic centred placement, or a Generator
            (int seed) to jitter each clip within its segment.

    Returns:
        int64 array (M, L) of frame indices; rows in temporal order of their
        start. Rows are consecutive runs when T >= L; when T < L each row is
        the stretched sequence of :func:`sample_clip`.
    """
    n = _check_pos_int(num_frames, "num_frames")
    M = _check_pos_int(num_clips, "num_clips")
    L = _check_pos_int(length, "length")
    if n < L:
        return np.tile(_evenly(n, L), (M, 1))
    i = np.arange(M, dtype=np.int64)
    if n >= M * L:
        # centred in M equal segments: non-overlapping
        starts = ((2 * i + 1) * n - M * L) // (2 * M)
        lo, hi = (i * n) // M, ((i + 1) * n) // M - L  # stay inside the segment
    else:
        # overlapping: starts evenly spread over [0, T-L] (first clip at the
        # start, last at the end); equals the centred rule at T = M L
        starts = (2 * i * (n - L) + (M - 1)) // (2 * (M - 1))
        half = (n - L) // (2 * (M - 1))
        lo, hi = np.maximum(starts - half, 0), np.minimum(starts + half, n - L)
    if rng is not None:
        rng = _as_rng(rng)
        starts = np.sort(lo + (rng.random(M) * (hi - lo + 1)).astype(np.int64))
    return starts[:, None] + np.arange(L, dtype=np.int64)[None, :]


# ---------------------------------------------------------------------------
# P x K identity batches (Sec. 3.2)
# ---------------------------------------------------------------------------
def _group(pids: Sequence[int]) -> dict[int, np.ndarray]:
    pids = np.asarray(pids)
    if pids.ndim != 1 or pids.size == 0:
        raise ValueError(f"pids: expected a non-empty 1-D sequence of identity ids, got shape {pids.shape}")
    uniq, inv = np.unique(pids, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.cumsum(np.bincount(inv))
    groups = np.split(order.astype(np.int64), bounds[:-1])
    return {int(u): g for u, g in zip(uniq, groups)}


def _pick(items: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(items, size=K, replace=len(items) < K)


def pk_batch(pids: Sequence[int], P: int, K: int, rng: np.random.Generator | int) -> np.ndarray:
    """One P x K batch: indices of K items for each of P distinct identities.

    Args:
        pids: (N,) identity of each item (e.g. of each training tracklet).
        P: identities per batch (needs at least P distinct ids).
        K: items per identity; drawn without replacement unless the identity
            has fewer than K items.
        rng: numpy Generator (or int seed).

    Returns:
        int64 array (P*K,), identity-major: items ``[p*K:(p+1)*K]`` share a pid.
    """
    P = _check_pos_int(P, "P")
    K = _check_pos_int(K, "K")
    groups = _group(pids)
    if len(groups) < P:
        raise ValueError(f"P={P}: only {len(groups)} distinct identities in pids; expected at least P")
    rng = _as_rng(rng)
    keys = np.array(sorted(groups))
    chosen = rng.choice(keys, size=P, replace=False)
    return np.concatenate([_pick(groups[int(k)], K, rng) for k in chosen]).astype(np.int64)


class PKSampler:
    """Epochs of P x K batches (Sec. 3.2).

    One epoch visits every identity once: the identities are shuffled and cut
    into ``num_ids // P`` groups of P (the remainder is dropped for that
    epoch), and each identity contributes K of its items (without replacement
    when it has at least K). ``num_batches`` overrides the epoch length (then
    identities are reshuffled whenever they run out). Each ``iter()`` starts a
    new epoch whose randomness is derived from ``(seed, epoch)``, so runs are
    reproducible; ``set_epoch`` picks the epoch explicitly.

    Args:
        pids: (N,) identity of each item.
        P, K: batch shape.
        seed: base seed.
        num_batches: batches per epoch (default ``num_ids // P``).

    Yields:
        int64 arrays of shape (P*K,), identity-major.
    """

    def __init__(self, pids: Sequence[int], P: int, K: int, seed: int = 0, num_batches: int | None = None):
        self.P = _check_pos_int(P, "P")
        self.K = _check_pos_int(K, "K")
        self.groups = _group(pids)
        self.keys = np.array(sorted(self.groups))
        if len(self.keys) < self.P:
            raise ValueError(f"P={P}: only {len(self.keys)} distinct identities in pids; expected at least P")
        self.seed = int(seed)
        self.num_batches = (
            len(self.keys) // self.P if num_batches is None else _check_pos_int(num_batches, "num_batches")
        )
        self.epoch = 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.keys)
        pos = 0
        for _ in range(self.num_batches):
            if pos + self.P > len(order):
                order = rng.permutation(self.keys)
                pos = 0
            chosen = order[pos : pos + self.P]
            pos += self.P
            yield np.concatenate([_pick(self.groups[int(k)], self.K, rng) for k in chosen]).astype(np.int64)
