"""A validation split carved out of the training identities, for choosing knobs honestly.

The paper picks top-t%'s t on the test queries (Table 2 reports the best t per level);
a reader cannot tell how much of a row is selection. :func:`holdout_validation` removes
``num_ids`` training identities *before any training* (neither the I3D nor an aggregator
sees them) and turns their tracklets into a leave-one-out query/gallery set: every
held-out tracklet is a query (when its identity appears in two cameras) against all the
others; the cross-camera protocol of the evaluation (Sec. 4.1) drops the query itself and
its identity's same-camera tracklets, so each query is matched across cameras only.
Knobs are then chosen on it (``reid_utils.experiments.sweep_tables``) and the test
numbers at the chosen knob are reported beside the test-chosen ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reid_utils.data.tracklets import DatasetError, VideoDataset

__all__ = ["holdout_validation", "validation_ids"]


def validation_ids(train_pids, num_ids: int, seed: int) -> np.ndarray:
    """The ``num_ids`` identities held out of ``train_pids`` (sorted), chosen by ``seed``.

    Raises:
        DatasetError: fewer than ``num_ids + 2`` identities to choose from (the rest
            must still train a P x K sampler with at least two identities).
    """
    pids = np.array(sorted({int(p) for p in train_pids}), dtype=np.int64)
    if int(num_ids) < 0:
        raise ValueError(f"val_ids: expected >= 0, got {num_ids}")
    if len(pids) < int(num_ids) + 2:
        raise DatasetError(
            f"val_ids={num_ids}: the training split has only {len(pids)} identities; "
            f"expected at least val_ids + 2 (set Config.val_ids lower)"
        )
    rng = np.random.default_rng([int(seed), 61])
    return np.sort(rng.choice(pids, size=int(num_ids), replace=False))


def holdout_validation(ds: VideoDataset, num_ids: int, seed: int = 0) -> tuple[VideoDataset, VideoDataset]:
    """Split ``ds.train`` into training and validation identities.

    Args:
        ds: a loaded dataset (its query/gallery are left as they are).
        num_ids: identities to hold out (0: ``ds`` unchanged and an empty validation set).
        seed: which identities.

    Returns:
        ``(train_ds, val)``: ``train_ds`` is ``ds`` without the held-out identities in
        ``train``; ``val`` is a :class:`VideoDataset` named ``<name>-val`` with an empty
        ``train``, every held-out tracklet in ``gallery`` and those of identities seen by two
        or more cameras in ``query``.
    """
    held = set(validation_ids([t.pid for t in ds.train], num_ids, seed).tolist()) if num_ids else set()
    keep = [t for t in ds.train if t.pid not in held]
    gallery = [t for t in ds.train if t.pid in held]
    cams = {}
    for t in gallery:
        cams.setdefault(t.pid, set()).add(t.camid)
    query = [t for t in gallery if len(cams[t.pid]) >= 2]
    train_ds = dataclasses.replace(ds, train=keep)
    val = dataclasses.replace(ds, name=f"{ds.name}-val", train=[], query=query, gallery=gallery)
    return train_ds, val
