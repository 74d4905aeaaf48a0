"""Which clips and clip pairs contain a nuisance (labels for Sec. 4.6 / Fig. 7, measured).

The synthetic benchmark annotates every frame with the nuisances the paper's
Fig. 7 names (occlusion, no person, identity switch, bad crop; plus motion
blur): ``reid_utils.synth.NUISANCES``. From them, every clip of a feature bank
gets a "contains X" label (:func:`clip_nuisance_fractions`, :func:`clip_labels`,
:func:`split_clip_labels`), and every clip pair of a query x gallery sequence
pair one more (:func:`pair_labels`). The label :data:`CORRUPTED` (Sec. 4.4)
comes from the corrupted test plan instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reid_utils.synth import NUISANCES  # the per-frame annotation columns (one definition)

__all__ = ["CORRUPTED", "clip_nuisance_fractions", "clip_labels", "split_clip_labels", "pair_labels"]

#: label of the clip pairs with at least one clip from the corrupted bank of the level's test plan (Sec. 4.4);
#: at M_c^max = 0 there are none and its AUC is undefined (NaN)
CORRUPTED = "corrupted"


def clip_nuisance_fractions(tracklets: Sequence, clip_frames, nuisances: Sequence[str] = NUISANCES) -> np.ndarray:
    """Fraction of each clip's frame slots carrying each annotated nuisance.

    Frame slots are the frame indices as fed to the I3D, so a frame repeated
    in a short tracklet counts as often as it is used.

    Args:
        tracklets: N tracklets with per-frame ``annotations`` (synthetic
            benchmark; ``datasets.Tracklet``).
        clip_frames: (N, M, L) frame indices of the clips (``FeatureBank.indices``).
        nuisances: annotation fields.

    Returns:
        (N, M, K) float array in [0, 1], K = len(nuisances).
    """
    idx = np.asarray(clip_frames)
    if idx.ndim != 3:
        raise ValueError(f"clip_frames: expected an (N, M, L) array of frame indices, got shape {idx.shape}")
    if len(tracklets) != idx.shape[0]:
        raise ValueError(
            f"tracklets: expected {idx.shape[0]} tracklets (one per row of clip_frames), got {len(tracklets)}"
        )
    if not len(nuisances):
        raise ValueError("nuisances: expected at least one annotation field")
    out = np.zeros(idx.shape[:2] + (len(nuisances),))
    for n, t in enumerate(tracklets):
        ann = getattr(t, "annotations", None)
        if ann is None:
            raise ValueError(
                f"tracklets[{n}] ({getattr(t, 'tid', '?')}): no per-frame annotations; "
                "nuisance labels need the synthetic benchmark's info/annotations.csv"
            )
        if idx[n].min() < 0 or idx[n].max() >= len(ann):
            raise ValueError(
                f"clip_frames[{n}]: frame indices {idx[n].min()}..{idx[n].max()} outside "
                f"the tracklet's {len(ann)} annotated frames"
            )
        for k, name in enumerate(nuisances):
            if name not in ann.dtype.names:
                raise ValueError(f"nuisances: {name!r} is not an annotation field; have {ann.dtype.names}")
            flags = np.asarray(ann[name], dtype=np.float64) > 0
            out[n, :, k] = flags[idx[n]].mean(axis=-1)
    return out


def clip_labels(fractions: np.ndarray, min_fraction: float = 0.5) -> np.ndarray:
    """A clip contains a nuisance if at least ``min_fraction`` of its L frame slots carry it.

    The default, half the clip, marks a nuisance that dominates the clip
    feature, as in the paper's Fig. 7 examples; ``min_fraction = 1 / L`` gives
    "any frame".

    Args:
        fractions: (..., K) fractions of :func:`clip_nuisance_fractions`.
        min_fraction: in (0, 1].

    Returns:
        bool array of the same shape.
    """
    if not 0.0 < float(min_fraction) <= 1.0:
        raise ValueError(f"min_fraction: expected a value in (0, 1], got {min_fraction}")
    f = np.asarray(fractions, dtype=np.float64)
    return f >= float(min_fraction) - 1e-12


def split_clip_labels(dataset, banks: dict, min_fraction: float = 0.5):
    """Nuisance labels of every query and gallery clip, or ``(None, None)`` without annotations.

    Real datasets (MARS, Duke, PRID) have no per-frame annotations; then only
    the ``corrupted`` label can be measured.

    Args:
        dataset: with ``.query`` / ``.gallery`` tracklets aligned with the banks.
        banks: ``{"query": FeatureBank, "gallery": FeatureBank, ...}`` (clip frame indices).
        min_fraction: see :func:`clip_labels`.

    Returns:
        ``(q_labels (Q, M, K), g_labels (G, M, K))`` bool arrays over
        :data:`NUISANCES`, or ``(None, None)``.
    """
    tracks = list(dataset.query) + list(dataset.gallery)
    if not tracks or any(getattr(t, "annotations", None) is None for t in tracks):
        return None, None
    return tuple(
        clip_labels(clip_nuisance_fractions(getattr(dataset, s), banks[s].indices), min_fraction)
        for s in ("query", "gallery")
    )


def pair_labels(table: pd.DataFrame, q_labels: np.ndarray, g_labels: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """Label every clip pair: it contains X if its query or its gallery clip does.

    Args:
        table: rows with ``q``, ``g``, ``i``, ``j``.
        q_labels: (Q, M, K) bool per query clip; g_labels: (G, M, K).
        names: the K label names (columns added).

    Returns:
        A copy of ``table`` with one bool column per name.
    """
    ql, gl = np.asarray(q_labels, dtype=bool), np.asarray(g_labels, dtype=bool)
    if ql.ndim != 3 or gl.ndim != 3 or ql.shape[2] != len(names) or gl.shape[2] != len(names):
        raise ValueError(f"q_labels, g_labels: expected (N, M, {len(names)}) arrays, got {ql.shape}, {gl.shape}")
    q, g, i, j = (table[c].to_numpy() for c in ("q", "g", "i", "j"))
    if len(table) and (
        q.max() >= ql.shape[0] or g.max() >= gl.shape[0] or i.max() >= ql.shape[1] or j.max() >= gl.shape[1]
    ):
        raise ValueError("table: query/gallery/clip indices outside the label arrays")
    out = table.copy()
    for k, name in enumerate(names):
        out[name] = ql[q, i, k] | gl[g, j, k]
    return out
