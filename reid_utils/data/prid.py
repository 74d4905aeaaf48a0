"""PRID2011 loader and its 10 train/test splits (McLaughlin et al., CVPR 2016; paper Sec. 4.1).

Layout: ``multi_shot/{cam_a,cam_b}/person_XXXX/NNNN.png``, frames sorted numerically.
Persons with at least ``min_frames`` (21) frames in both cameras (178 in the real
data) are split half/half into train/test by 10 random splits; query = the cam_a
tracklets of the test persons, gallery = their cam_b tracklets, train = both cameras
of the train persons. The splits live in ``<root>/splits_prid2011.json``
(:data:`PRID_SPLITS_FILE`): a JSON list of ``{"train": [...], "test": [...]}`` whose
entries are person numbers (``1``) or folder names (``"person_0001"``). The root may be the
folder holding ``multi_shot/`` or up to two levels above it (``root/prid_2011/multi_shot``);
a splits file beside the dataset folder (torchreid's ``prid2011/splits_prid2011.json``) is used.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from reid_utils.data.discover import Layout, find_dataset_root
from reid_utils.data.tracklets import (
    DatasetError,
    Tracklet,
    VideoDataset,
    dataset_root,
    is_image,
    probe_splits,
    require_dir,
)
from reid_utils.data.validate import id_list

PRID_SPLITS_FILE = "splits_prid2011.json"
LAYOUT_MARKERS = ("multi_shot",)  # top-level folders that identify the layout
LAYOUT = Layout(
    title="PRID2011",
    markers=LAYOUT_MARKERS,
    expected="multi_shot/cam_a/ and multi_shot/cam_b/ of person_XXXX/NNNN.png frames",
)
_PRID_PERSON = re.compile(r"^person_(\d+)$")


def _prid_frames(pdir: Path) -> tuple:
    keyed = []
    for e in os.listdir(pdir):
        if not is_image(e):
            continue
        stem = os.path.splitext(e)[0]
        if not stem.isdigit():
            raise DatasetError(f"{pdir / e}: frame name is not a number; expected NNNN.png")
        keyed.append((int(stem), e))
    if not keyed:
        raise DatasetError(f"{pdir} holds no frames: expected a non-empty tracklet of NNNN.png images")
    keyed.sort()
    if len({k for k, _ in keyed}) != len(keyed):
        raise DatasetError(f"{pdir}: two frames share a frame number; expected distinct numbers")
    return tuple(os.path.join(str(pdir), e) for _, e in keyed)


def _prid_camera(cdir: Path) -> dict[int, tuple]:
    out = {}
    for p in sorted(cdir.iterdir()):
        m = _PRID_PERSON.match(p.name)
        if p.is_dir() and m:
            out[int(m.group(1))] = _prid_frames(p)
    if not out:
        raise DatasetError(f"{cdir} holds no person_XXXX/ folders; expected PRID2011 multi_shot tracklets")
    return out


_PERSON_IDS = "person ids (ints or 'person_XXXX' folder names)"


def _person_id(x, where: str) -> int:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, str):
        m = _PRID_PERSON.match(x)
        if m:
            return int(m.group(1))
        if x.isdigit():
            return int(x)
    raise DatasetError(f"{where}: entry {x!r} is not a person; expected an int or 'person_XXXX'")


def _parse_split(s: dict, k: int, path: Path) -> dict:
    """Split ``k`` as sorted int lists: each non-empty, without repeats, train and test disjoint."""
    out = {}
    for key in ("train", "test"):
        where = f"{path}: split {k}: {key!r}"
        out[key] = id_list(s[key], where, lambda x, w=where: _person_id(x, w), _PERSON_IDS)
    both = sorted(set(out["train"]) & set(out["test"]))
    if both:
        raise DatasetError(f"{path}: split {k} has persons in both train and test ({both[:5]}); expected disjoint sets")
    return out


def read_prid_splits(path: str | Path) -> list[dict]:
    """Read a PRID2011 splits JSON: a list of ``{"train": [...], "test": [...]}``.

    Entries may be ints (``1``) or directory names (``"person_0001"``); each list must
    be non-empty and name a person once (after turning names into ids), and train and
    test must be disjoint (:class:`DatasetError` naming the file and the split).

    Returns:
        list of dicts with sorted int lists under ``"train"`` and ``"test"``.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise DatasetError(f"{path} cannot be read ({e}); expected a PRID2011 splits JSON") from None
    except ValueError as e:
        raise DatasetError(
            f"{path} is not valid JSON ({e}); expected a list of {{'train': [...], 'test': [...]}}"
        ) from None
    if (
        not isinstance(raw, list)
        or not raw
        or not all(isinstance(s, dict) and "train" in s and "test" in s for s in raw)
    ):
        raise DatasetError(
            f"{path}: expected a non-empty JSON list of objects with 'train' and 'test' lists of person ids"
        )
    return [_parse_split(s, k, path) for k, s in enumerate(raw)]


def make_prid_splits(persons: Iterable[int], num_splits: int = 10, seed: int = 0) -> list[dict]:
    """``num_splits`` random half/half train/test splits of ``persons`` (deterministic).

    With an odd count the extra person goes to test.
    """
    from reid_utils.synth.layouts import prid_splits  # one implementation: the synthetic PRID tree writes it too

    return prid_splits(list(persons), num_splits=num_splits, seed=seed)


def _read_or_make_splits(spath: Path, eligible: list[int], num_splits: int, seed: int) -> tuple[list[dict], str]:
    """``(splits, source)``: read from ``spath``, or generated from ``seed`` and saved there.

    If the file cannot be written (read-only root) a warning is issued and the
    generated splits are used anyway (they are reproducible from the seed).
    """
    if spath.is_file():
        return read_prid_splits(spath), str(spath)
    splits = make_prid_splits(eligible, num_splits=num_splits, seed=seed)
    source = f"generated(seed={seed})"
    try:
        from reid_utils.cache import atomic_write_text

        atomic_write_text(spath, json.dumps(splits, indent=1))
        source = f"{source} -> {spath}"
    except OSError as e:
        warnings.warn(
            f"PRID2011: could not save the generated splits to {spath} ({e}); "
            f"using them unsaved (pass splits_path= to save elsewhere)"
        )
    return splits, source


def _check_eligible(split: dict, k: int, spath: Path, cams: list, eligible: list, min_frames: int) -> None:
    """Every person of split ``k`` must be eligible (in both cameras with >= ``min_frames`` frames)."""
    bad = sorted(set(split["train"] + split["test"]) - set(eligible))
    if not bad:
        return
    why = []
    for p in bad[:5]:
        counts = [len(c.get(p, ())) for c in cams]
        absent = [n for n, c in zip(("cam_a", "cam_b"), counts) if c == 0]
        why.append(
            f"{p}: not in {' nor '.join(absent)}"
            if absent
            else f"{p}: {counts[0]} frames in cam_a, {counts[1]} frames in cam_b"
        )
    raise DatasetError(
        f"{spath}: split {k} names persons {bad[:5]} that are not eligible ({'; '.join(why)}); "
        f"expected persons present in both multi_shot/cam_a and cam_b with >= {min_frames} frames"
    )


def _find_splits(given: Path, folder: Path) -> Path:
    """The splits file: in the dataset ``folder``, else in a folder between it and the root
    ``given`` (nearest first); when there is none, where a generated one is saved (``folder``)."""
    p = folder
    while True:
        if (p / PRID_SPLITS_FILE).is_file():
            return p / PRID_SPLITS_FILE
        if p == given or p.parent == p:
            return folder / PRID_SPLITS_FILE
        p = p.parent


def load_prid(
    root,
    split_id: int = 0,
    splits_path: str | Path | None = None,
    seed: int = 0,
    min_frames: int = 21,
    num_splits: int = 10,
) -> VideoDataset:
    """Load PRID2011 multi-shot with split ``split_id`` (see the module docstring).

    Args:
        root: the folder holding ``multi_shot/cam_a`` and ``multi_shot/cam_b``, or a folder
            up to two levels above it.
        split_id: which of the splits to use (0..num_splits-1).
        splits_path: where to read/write the splits JSON (default
            ``splits_prid2011.json`` in the dataset folder, or in a folder between it and
            ``root`` when one is there); generated deterministically from ``seed`` and
            saved atomically (in the dataset folder) when missing.
        seed: seed of generated splits.
        min_frames: persons need at least this many frames in both cameras.
        num_splits: number of generated splits.
    """
    given = dataset_root(root, "prid2011", LAYOUT.expected)
    root = find_dataset_root(given, LAYOUT, "prid2011")
    ms = require_dir(root / "multi_shot", "the PRID2011 multi_shot/ folder")
    cams = [
        _prid_camera(require_dir(ms / c, f"the PRID2011 camera folder {c}/person_XXXX/")) for c in ("cam_a", "cam_b")
    ]
    both = sorted(set(cams[0]) & set(cams[1]))
    eligible = [p for p in both if min(len(cams[0][p]), len(cams[1][p])) >= min_frames]
    if not eligible:
        raise DatasetError(
            f"{ms}: no person has >= {min_frames} frames in both cam_a and cam_b; "
            f"expected person_XXXX folders present in both cameras"
        )
    spath = Path(splits_path) if splits_path is not None else _find_splits(given, root)
    splits, source = _read_or_make_splits(spath, eligible, num_splits, seed)
    if not 0 <= split_id < len(splits):
        raise ValueError(f"split_id={split_id}: expected 0..{len(splits) - 1} ({source})")
    split = splits[split_id]
    _check_eligible(split, split_id, spath, cams, eligible, min_frames)

    def tracks(pids, cam_ids):
        return [
            Tracklet(frames=cams[c][p], pid=p, camid=c, tid=f"{('cam_a', 'cam_b')[c]}/person_{p:04d}", index=p)
            for p in pids
            for c in cam_ids
        ]

    train = tracks(split["train"], (0, 1))
    query = tracks(split["test"], (0,))
    gallery = tracks(split["test"], (1,))
    probe_splits(train, query, gallery)
    meta = {
        "split_id": split_id,
        "splits_source": source,
        "num_eligible_persons": len(eligible),
        "min_frames": min_frames,
    }
    protocol = f"prid-split{split_id}"
    return VideoDataset("prid2011", str(root), train, query, gallery, protocol=protocol, meta=meta)
