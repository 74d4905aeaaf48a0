"""Video re-ID datasets by name: MARS, DukeMTMC-VideoReID, PRID2011, synthetic.

The paper evaluates on MARS, DukeMTMC-VideoReID and PRID2011 (Sec. 4.1) with the
usual protocols of [44], [38] and [37]. :func:`load_dataset` turns a dataset's
on-disk layout into a :class:`VideoDataset` of :class:`Tracklet` lists (``train``,
``query``, ``gallery``; ordered absolute frame paths, person id, 0-based camera id);
the layouts are described by the loaders (:mod:`reid_utils.data.mars`,
:mod:`reid_utils.data.duke`, :mod:`reid_utils.data.prid`). The ``synthetic``
benchmark (``reid_utils.synth``) is written in the MARS layout and read by the MARS
loader with per-frame nuisance annotations. :func:`layout_problem` checks a root
cheaply; :func:`dataset_statistics`, :func:`nuisance_summary` and
:func:`most_affected` describe a loaded dataset (notebook 00).

Bad input raises one :class:`DatasetError` naming the path and what was expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reid_utils.data import duke, mars, prid
from reid_utils.data.duke import load_duke
from reid_utils.data.mars import load_mars
from reid_utils.data.prid import PRID_SPLITS_FILE, load_prid, make_prid_splits, read_prid_splits
from reid_utils.data.tracklets import DatasetError, Tracklet, VideoDataset, dataset_root, id_arrays
from reid_utils.paper import DATASET_TITLES
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
    root = dataset_root(root, "synthetic", "a MARS-layout tree with info/annotations.csv")
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
_LAYOUT_MARKERS = {
    "mars": mars.LAYOUT_MARKERS,
    "synthetic": mars.LAYOUT_MARKERS,
    "dukemtmc-videoreid": duke.LAYOUT_MARKERS,
    "prid2011": prid.LAYOUT_MARKERS,
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
        root: the dataset directory (``synthetic``: optional, see
            :func:`load_synthetic`).
        **options: loader options (``official`` for MARS/synthetic,
            ``split_id``/``splits_path``/``seed`` for PRID, ``synth_cfg``/
            ``cache_root`` for synthetic, ``check_frames`` for MARS).

    Returns:
        VideoDataset with ``.train``, ``.query``, ``.gallery`` tracklet lists.

    Raises:
        DatasetError: missing or malformed data (message names the path).
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
            return load_dataset("synthetic", cfg.data_root, **options)
        return load_dataset("synthetic", None, synth_cfg=cfg.synth, cache_root=cfg.cache_root, **options)
    if not cfg.data_root:
        raise DatasetError(
            f"profile {cfg.profile!r} uses dataset {cfg.dataset!r} but no data_root "
            f"is set; expected the dataset directory (set $REID_DATA_ROOT)"
        )
    return load_dataset(key, cfg.data_root, **options)


def layout_problem(name: str, root) -> str | None:
    """Whether ``root`` looks like dataset ``name``'s layout, from its top-level folders only.

    Cheap (no file is read): MARS and synthetic need ``info/`` and ``bbox_test/``,
    DukeMTMC-VideoReID ``query/`` and ``gallery/``, PRID2011 ``multi_shot/``. The
    loaders check the rest.

    Args:
        name: a dataset name or alias (:func:`canonical_name`).
        root: the dataset directory (str or Path; ``~`` is expanded).

    Returns:
        None when the folders are there; otherwise what is wrong, e.g. ``"its data
        root /d is not a directory"`` or ``"its data root /d lacks info/, bbox_test/
        (expected the MARS layout)"``.
    """
    key = canonical_name(name)
    if root is None or str(root) == "":
        return "no data root is given"
    p = Path(root).expanduser()
    if not p.is_dir():
        return f"its data root {p} is not a directory"
    lacking = [d + "/" for d in _LAYOUT_MARKERS[key] if not (p / d).is_dir()]
    if lacking:
        return f"its data root {p} lacks {', '.join(lacking)} (expected the {DATASET_TITLES[key]} layout)"
    return None


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
