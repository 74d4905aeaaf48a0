"""Video re-ID datasets by name: MARS, DukeMTMC-VideoReID, PRID2011, synthetic.

The paper evaluates on MARS, DukeMTMC-VideoReID and PRID2011 (Sec. 4.1) with the
usual protocols of [44], [38] and [37]. :func:`load_dataset` turns a dataset's
on-disk layout into a :class:`VideoDataset` of :class:`Tracklet` lists (``train``,
``query``, ``gallery``; ordered absolute frame paths, person id, 0-based camera id);
the layouts are described by the loaders (:mod:`reid_utils.data.mars`,
:mod:`reid_utils.data.duke`, :mod:`reid_utils.data.prid`). The ``synthetic``
benchmark (``reid_utils.synth``) is written in the MARS layout and read by the MARS
loader with per-frame nuisance annotations. A root may be the dataset folder or up to
two levels above it (:mod:`reid_utils.data.discover`); a query/gallery-only tree loads
with ``train == []`` (``VideoDataset.require_train``). :func:`layout_problem` checks a
root cheaply; :func:`dataset_statistics`, :func:`nuisance_summary` and
:func:`most_affected` describe a loaded dataset (notebook 00).

Bad input raises one :class:`DatasetError` naming the path and what was expected.
"""

from __future__ import annotations

import numpy as np

from reid_utils.data import discover, duke, mars, prid
from reid_utils.data.duke import load_duke
from reid_utils.data.mars import load_mars
from reid_utils.data.prid import PRID_SPLITS_FILE, load_prid, make_prid_splits, read_prid_splits
from reid_utils.data.tracklets import DatasetError, Tracklet, VideoDataset, id_arrays, require_train
from reid_utils.data.validation import holdout_validation
from reid_utils.synth import NUISANCES

__all__ = [
    "DATASET_NAMES",
    "PRID_SPLITS_FILE",
    "DatasetError",
    "Tracklet",
    "VideoDataset",
    "canonical_name",
    "dataset_statistics",
    "id_arrays",
    "layout_problem",
    "load_dataset",
    "load_dataset_for_config",
    "load_duke",
    "load_mars",
    "load_prid",
    "load_synthetic",
    "make_prid_splits",
    "most_affected",
    "nuisance_summary",
    "read_prid_splits",
    "require_train",
]

DATASET_NAMES = ("mars", "dukemtmc-videoreid", "prid2011", "synthetic")


def load_synthetic(root=None, synth_cfg=None, cache_root=None, **mars_options) -> VideoDataset:
    """The embedded benchmark: generate (or reuse) it, then read it as MARS.

    ``reid_utils.synth.ensure_synthetic(synth_cfg, cache_root)`` builds (or reuses) the
    benchmark in the MARS layout plus ``info/annotations.csv``; every tracklet gets
    its per-frame ``annotations`` (:class:`reid_utils.data.mars.Annotations`).

    Args:
        root: an already generated synthetic tree (then nothing is generated).
        synth_cfg: ``reid_utils.config.SynthConfig`` passed to ``reid_utils.synth.ensure_synthetic``.
        cache_root: artifact root (``cfg.cache_root``) for the generated tree.
        **mars_options: passed to :func:`load_mars` (e.g. ``official=True``).
    """
    if root is None:
        if synth_cfg is None or cache_root is None:
            raise ValueError(
                "load_dataset('synthetic'): give either root= (a generated tree) "
                "or both synth_cfg= and cache_root= (to generate/reuse one)"
            )
        import importlib

        synth = importlib.import_module("reid_utils.synth")
        root = synth.ensure_synthetic(synth_cfg, cache_root)
    root = discover.find_dataset_root(root, _LAYOUTS["synthetic"], "synthetic")
    return load_mars(root, annotations=root / "info" / "annotations.csv", name="synthetic", **mars_options)


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------
_LOADERS = {
    "mars": load_mars,
    "dukemtmc-videoreid": load_duke,
    "prid2011": load_prid,
    "synthetic": load_synthetic,
}
_ALIASES = {
    "duke": "dukemtmc-videoreid",
    "dukemtmcvidreid": "dukemtmc-videoreid",
    "dukemtmc_videoreid": "dukemtmc-videoreid",
    "prid": "prid2011",
}
_LAYOUTS = {
    "mars": mars.LAYOUT,
    "synthetic": mars.LAYOUT,  # written in the MARS layout (plus info/annotations.csv)
    "dukemtmc-videoreid": duke.LAYOUT,
    "prid2011": prid.LAYOUT,
}


def canonical_name(name: str) -> str:
    """``mars`` / ``dukemtmc-videoreid`` / ``prid2011`` / ``synthetic`` for a name or alias.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)}")
    return key


def load_dataset(name: str, root=None, **options) -> VideoDataset:
    """Load a video re-ID dataset by name.

    Args:
        name: ``mars``, ``dukemtmc-videoreid``, ``prid2011`` or ``synthetic``.
        root: the dataset folder or a folder up to two levels above it (e.g.
            ``reid-data`` for ``reid-data/dukemtmc-vidreid/DukeMTMC-VideoReID``);
            ``synthetic``: optional, see :func:`load_synthetic`.
        **options: loader options (``official`` for MARS/synthetic,
            ``split_id``/``splits_path``/``seed`` for PRID, ``synth_cfg``/
            ``cache_root`` for synthetic, ``check_frames`` for MARS).

    Returns:
        VideoDataset with ``.train``, ``.query``, ``.gallery`` tracklet lists; ``.root`` is
        the dataset folder found. A query/gallery-only tree gives ``train == []``
        (``meta["no_train"]`` says why).

    Raises:
        DatasetError: missing or malformed data (message names the path), no dataset
            folder or several under ``root`` (each one named).
    """
    key = canonical_name(name)
    allowed = _option_names(key)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"load_dataset({key!r}): unknown option(s) {unknown}; expected some of {sorted(allowed)}")
    return _LOADERS[key](root, **options)


def _option_names(key: str) -> set:
    import inspect

    fns = [_LOADERS[key]] + ([load_mars] if key == "synthetic" else [])
    names = set()
    for fn in fns:
        names |= {
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY
        }
    return names - {"root", "annotations", "name"}


def load_dataset_for_config(cfg, **options) -> VideoDataset:
    """The dataset a :class:`reid_utils.config.Config` asks for.

    ``cfg.dataset`` (a name or alias; ``$REID_DATASET`` sets it) is resolved first: an
    unknown name is a ``ValueError`` naming it and the known names. ``synthetic``
    generates/reuses the benchmark of ``cfg.synth`` under ``cfg.cache_root``; a real
    dataset is read from ``cfg.data_root``.
    """
    try:
        key = canonical_name(cfg.dataset)
    except ValueError:
        raise ValueError(
            f"profile {cfg.profile!r}: unknown dataset {cfg.dataset!r} (cfg.dataset, set from $REID_DATASET "
            f"when given); expected one of {', '.join(DATASET_NAMES)} or an alias ({', '.join(_ALIASES)})"
        ) from None
    if key == "synthetic":
        if cfg.data_root:
            return _held_out(cfg, load_dataset("synthetic", cfg.data_root, **options))
        return _held_out(
            cfg, load_dataset("synthetic", None, synth_cfg=cfg.synth, cache_root=cfg.cache_root, **options)
        )
    if not cfg.data_root:
        raise DatasetError(
            f"profile {cfg.profile!r} uses dataset {cfg.dataset!r} but no data_root "
            f"is set; expected the dataset directory (set $REID_DATA_ROOT)"
        )
    return _held_out(cfg, load_dataset(key, cfg.data_root, **options))


def _held_out(cfg, ds: VideoDataset) -> VideoDataset:
    """``ds`` without the ``cfg.val_ids`` validation identities in ``train``; the validation
    set (:func:`reid_utils.data.validation.holdout_validation`) is ``ds.meta["validation"]``.
    The split does not depend on ``cfg.seed``: a seed sweep varies the training only."""
    if not cfg.val_ids or not ds.train:
        return ds
    train_ds, val = holdout_validation(ds, cfg.val_ids, seed=0)
    train_ds.meta = dict(ds.meta, validation=val)
    return train_ds


def layout_problem(name: str, root) -> str | None:
    """Whether ``root`` leads to exactly one folder in dataset ``name``'s layout.

    Cheap (folder listings only, no data file is read): ``root`` or a folder up to two
    levels below it must hold MARS / synthetic ``info/`` and ``bbox_test/``,
    DukeMTMC-VideoReID ``query/`` and ``gallery/`` with Duke-named frames, PRID2011
    ``multi_shot/`` (:mod:`reid_utils.data.discover`). The loaders check the rest.

    Args:
        name: a dataset name or alias (:func:`canonical_name`).
        root: what the user gave (str or Path; ``~`` is expanded).

    Returns:
        None when exactly one dataset folder is found; otherwise what is wrong, e.g.
        ``"its data root /d is not a directory"``, ``"its data root /d lacks info/,
        bbox_test/ (expected the MARS layout)"`` (plus what the folders below it lack) or
        ``"its data root /d holds 2 MARS folders (/d/a, /d/b); expected one: ..."``.
    """
    return discover.layout_problem(root, _LAYOUTS[canonical_name(name)])


# ---------------------------------------------------------------------------
# describing a loaded dataset
# ---------------------------------------------------------------------------
def dataset_statistics(ds: VideoDataset, verbose: bool = True) -> dict:
    """Counts for notebook 00: identities, tracklets, frames, per camera, lengths.

    Returns:
        dict with ``"summary"`` (pandas DataFrame, one row per split and a
        ``total`` row: identities, tracklets, frames, min/median/mean/max
        tracklet length), ``"per_camera"`` (DataFrame of tracklet counts,
        split x camera), ``"lengths"`` (split -> int64 array of tracklet
        lengths) and ``"pids"`` (split -> sorted distinct pids).
    """
    import pandas as pd

    splits = {"train": ds.train, "query": ds.query, "gallery": ds.gallery}
    # The total counts each distinct tracklet once (official MARS: queries are also in the gallery).
    seen, uniq = set(), []
    for t in ds.train + ds.query + ds.gallery:
        if id(t) not in seen:
            seen.add(id(t))
            uniq.append(t)
    rows, lengths, pids, cams = [], {}, {}, {}
    for name, tr in list(splits.items()) + [("total", uniq)]:
        lens = np.array([len(t) for t in tr], dtype=np.int64)
        lengths[name] = lens
        pids[name] = np.array(sorted({t.pid for t in tr}), dtype=np.int64)
        rows.append(
            {
                "split": name,
                "identities": len(pids[name]),
                "tracklets": len(tr),
                "frames": int(lens.sum()),
                "min_len": int(lens.min()) if len(lens) else 0,
                "median_len": float(np.median(lens)) if len(lens) else 0.0,
                "mean_len": float(lens.mean()) if len(lens) else 0.0,
                "max_len": int(lens.max()) if len(lens) else 0,
            }
        )
        if name != "total":
            cams[name] = pd.Series([t.camid for t in tr], dtype="int64").value_counts()
    summary = pd.DataFrame(rows).set_index("split")
    per_cam = pd.DataFrame(cams).fillna(0).astype(int).sort_index().T
    per_cam.columns = [f"cam{c}" for c in per_cam.columns]
    out = {"summary": summary, "per_camera": per_cam, "lengths": lengths, "pids": pids}
    if verbose:
        print(f"{ds.name} ({ds.protocol}) at {ds.root}")
        print(summary.to_string())
        print("tracklets per camera:")
        print(per_cam.to_string())
    return out


def nuisance_summary(ds: VideoDataset, nuisances=NUISANCES):
    """Per-split nuisance rates from the per-frame annotations (synthetic benchmark).

    Returns:
        pandas DataFrame indexed by (split, nuisance) with the fraction of
        frames carrying it (``frames``) and the fraction of tracklets with at
        least one such frame (``tracklets``); empty if there are no annotations.
    """
    import pandas as pd

    rows = []
    for split, tracks in (("train", ds.train), ("query", ds.query), ("gallery", ds.gallery)):
        anns = [t.annotations for t in tracks if t.annotations is not None]
        if not anns:
            continue
        for n in nuisances:
            if n not in anns[0].dtype.names:
                continue
            per_frame = np.concatenate([np.asarray(a[n], dtype=np.float64) > 0 for a in anns])
            per_track = np.array([bool((np.asarray(a[n], dtype=np.float64) > 0).any()) for a in anns])
            rows.append({"split": split, "nuisance": n, "frames": per_frame.mean(), "tracklets": per_track.mean()})
    if not rows:
        return pd.DataFrame(columns=["frames", "tracklets"])
    return pd.DataFrame(rows).set_index(["split", "nuisance"])


def most_affected(tracklets, num: int, nuisances=NUISANCES) -> list:
    """The ``num`` annotated tracklets with the most nuisance frames (for contact sheets).

    Tracklets without annotations (real datasets) are skipped, so the result may be empty.
    """

    def load(t):
        a = t.annotations
        return sum(int((np.asarray(a[n], dtype=np.float64) > 0).sum()) for n in nuisances if n in a.dtype.names)

    annotated = [t for t in tracklets if t.annotations is not None]
    return sorted(annotated, key=load, reverse=True)[:num]
