"""MARS loader (Zheng et al., ECCV 2016; paper Sec. 4.1), also used for the synthetic benchmark.

Layout: ``bbox_train/``, ``bbox_test/``, ``info/{train,test}_name.txt``,
``info/tracks_{train,test}_info.mat`` (variables ``track_train_info`` /
``track_test_info``; rows ``start, end, pid, camid``; start/end 1-based and inclusive
into the name list; camid 1..6) and ``info/query_IDX.mat`` (variable ``query_IDX``,
1-based rows of the test tracks). Frame names ``PPPPCcTttttFfff.jpg``, junk pid -1
written ``00-1``; a frame lives at ``<root>/bbox_<split>/<name[:4]>/<name>``.
The synthetic benchmark adds ``info/annotations.csv`` (per-frame nuisances), attached
to each tracklet as ``annotations`` (see :class:`Annotations`).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from reid_utils.data.tracklets import (
    DatasetError,
    Tracklet,
    VideoDataset,
    dataset_root,
    probe_splits,
    require_dir,
    require_file,
)

LAYOUT_MARKERS = ("info", "bbox_test")  # top-level folders that identify the layout
_MARS_NAME = re.compile(r"^(\d{4}|00-1)C(\d)T(\d+)F(\d+)\.\w+$")


def _read_names(path: Path) -> list[str]:
    require_file(path, "a text file with one frame name per line")
    with open(path) as f:
        names = [ln.strip() for ln in f]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"{path} is empty: expected one frame name per line")
    return names


def _read_mat(path: Path, var: str, ncols: int | None = None) -> np.ndarray:
    import scipy.io

    require_file(path, f"a MATLAB file holding the variable {var!r}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:
        raise DatasetError(
            f"{path} cannot be read as a .mat file ({e}); expected a MATLAB file holding {var!r}"
        ) from None
    if var not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path} has no variable {var!r} (found {found})")
    arr = np.asarray(mat[var])
    if ncols is not None and (arr.ndim != 2 or arr.shape[1] < ncols):
        raise DatasetError(
            f"{path}: {var!r} has shape {arr.shape}; expected (num_tracks, {ncols}) rows of start, end, pid, camid"
        )
    return arr.astype(np.int64)


def _mars_pid(prefix: str) -> int:
    return -1 if prefix == "00-1" else int(prefix)


def _row_names(r: int, row, names: list[str], mat_path: Path, names_path: Path) -> tuple[list[str], int, int]:
    """The frame names of ``.mat`` row ``r`` (0-based), checked against its pid and camera."""
    start, end, pid, cam = (int(v) for v in row[:4])
    n = len(names)
    if start > end:
        raise DatasetError(
            f"{mat_path}: row {r + 1} is an empty tracklet (start={start} > end={end}); expected start <= end"
        )
    if start < 1 or end > n:
        raise DatasetError(
            f"{mat_path}: row {r + 1} (start={start}, end={end}) points "
            f"outside {names_path} which has {n} names; expected "
            f"1 <= start <= end <= {n}"
        )
    tnames = names[start - 1 : end]
    prefixes = {nm[:6] for nm in tnames}
    m = _MARS_NAME.match(tnames[0])
    if m is None:
        raise DatasetError(
            f"{names_path}: frame name {tnames[0]!r} does not match the MARS pattern PPPPCcTttttFfff.jpg"
        )
    if len(prefixes) != 1 or _mars_pid(m.group(1)) != pid or int(m.group(2)) != cam:
        raise DatasetError(
            f"{mat_path}: row {r + 1} says pid={pid}, camid={cam} but its frames in "
            f"{names_path} (lines {start}-{end}) are named {sorted(prefixes)[:3]}; "
            f"expected every name to start with the row's pid and camera"
        )
    if not 1 <= cam <= 9:
        raise DatasetError(f"{mat_path}: row {r + 1} has camid={cam}; expected 1-based camera ids")
    return tnames, pid, cam


def _mars_tracks(
    root: Path,
    split: str,
    names: list[str],
    info: np.ndarray,
    mat_path: Path,
    names_path: Path,
    check_frames: str,
    ann: Annotations | None,
) -> list[Tracklet]:
    folder = root / f"bbox_{split}"
    out = []
    for r, row in enumerate(info):
        tnames, pid, cam = _row_names(r, row, names, mat_path, names_path)
        sub = os.path.join(str(folder), tnames[0][:4])
        frames = tuple(os.path.join(sub, nm) for nm in tnames)
        out.append(
            Tracklet(
                frames=frames,
                pid=pid,
                camid=cam - 1,
                tid=f"bbox_{split}/{tnames[0][:11]}",
                index=r,
                annotations=None if ann is None else ann.lookup(split, tnames),
            )
        )
    _check_exist(out, check_frames, folder)
    return out


def _check_exist(tracks: list[Tracklet], mode: str, folder: Path) -> None:
    if mode == "none":
        return
    if mode not in ("first", "all"):
        raise ValueError(f"check_frames={mode!r}: expected 'first', 'all' or 'none'")
    for t in tracks:
        paths = t.frames if mode == "all" else (t.frames[0], t.frames[-1])
        for p in paths:
            if not os.path.isfile(p):
                raise DatasetError(f"{p} does not exist: expected frame of tracklet {t.tid} under {folder}/<pid>/")


class Annotations:
    """Per-frame annotation table (``info/annotations.csv``) indexed by (split, name).

    The CSV has the header ``split,name,true_pid,occlusion,empty,id_switch,bad_crop,blur``
    (one row per frame); :meth:`lookup` gives a tracklet's rows as a read-only numpy
    structured array aligned with its frames (``t.annotations["occlusion"][i]`` is
    frame i's flag).
    """

    def __init__(self, path: Path):
        self.path = require_file(path, "the per-frame annotation table (split,name,true_pid,occlusion,...)")
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][:2] != ["split", "name"] or len(rows[0]) < 3:
            raise DatasetError(
                f"{path}: expected a header starting with 'split,name,' "
                f"followed by annotation columns; got {rows[0] if rows else 'nothing'}"
            )
        header, body = rows[0], [r for r in rows[1:] if r]
        bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
        if bad:
            raise DatasetError(
                f"{path}: line {bad[0]} has a different number of fields than the header ({len(header)})"
            )
        cols = list(zip(*body)) if body else [()] * len(header)
        arrays = [_parse_column(np.array(c, dtype=str), path, h) for h, c in zip(header[2:], cols[2:])]
        self.table = np.rec.fromarrays(arrays, names=header[2:]).view(np.ndarray)
        self.table.setflags(write=False)
        self.index = {}
        for i, (split, name) in enumerate(zip(cols[0], cols[1])):
            self.index[(split.removeprefix("bbox_"), name)] = i
        self.fields = tuple(header[2:])

    def lookup(self, split: str, names: list[str]) -> np.ndarray:
        try:
            idx = np.array([self.index[(split, n)] for n in names], dtype=np.int64)
        except KeyError as e:
            raise DatasetError(
                f"{self.path}: no annotation row for frame {e.args[0][1]!r} "
                f"of split {split!r}; expected one row per frame"
            ) from None
        sub = self.table[idx]
        sub.setflags(write=False)
        return sub


def _parse_column(col: np.ndarray, path: Path, name: str) -> np.ndarray:
    for dtype in (np.int64, np.float64):
        try:
            return col.astype(dtype)
        except ValueError:
            pass
    low = np.char.lower(col)
    if np.isin(low, ["true", "false"]).all():
        return low == "true"
    return col


def _query_rows(info: Path, num_test: int) -> np.ndarray:
    """0-based test rows of ``info/query_IDX.mat``, checked."""
    q_path = info / "query_IDX.mat"
    qidx = _read_mat(q_path, "query_IDX").ravel() - 1
    if qidx.size == 0 or qidx.min() < 0 or qidx.max() >= num_test:
        raise DatasetError(
            f"{q_path}: query_IDX must hold 1-based rows of "
            f"tracks_test_info.mat in 1..{num_test}; got range "
            f"{qidx.min() + 1 if qidx.size else None}..{qidx.max() + 1 if qidx.size else None}"
        )
    if len(np.unique(qidx)) != len(qidx):
        raise DatasetError(f"{q_path}: query_IDX has repeated rows; expected distinct test tracks")
    return qidx


def _split_test(train_all: list, train: list, test: list, qidx: np.ndarray, official: bool):
    """``(query, gallery, meta, protocol)`` of either evaluation convention (see :func:`load_mars`)."""
    if official:
        query = [test[i] for i in qidx]
        gallery = list(test)
        meta = {"query_gallery_index": qidx.copy(), "num_junk_train": len(train_all) - len(train)}
        return query, gallery, meta, "official-mars"
    qset = set(qidx.tolist())
    query = [test[i] for i in qidx if test[i].pid != -1]
    gallery = [t for i, t in enumerate(test) if i not in qset and t.pid != -1]
    meta = {"num_junk_removed": sum(t.pid == -1 for t in train_all + test)}
    return query, gallery, meta, "torchreid"


def load_mars(
    root,
    official: bool = False,
    gallery_includes_queries: bool | None = None,
    check_frames: str = "first",
    annotations: str | Path | None = None,
    name: str = "mars",
) -> VideoDataset:
    """Load MARS (layout in the module docstring).

    Two evaluation conventions: ``official=False`` (the torchreid split used by most
    PyTorch code): query = the ``query_IDX`` rows, gallery = the remaining test
    tracks, junk (pid -1) removed everywhere, distractors (pid 0) kept;
    ``protocol == "torchreid"``. ``official=True`` (the official MARS MATLAB
    evaluation): gallery = *all* test tracks in ``tracks_test_info`` order, queries and
    junk included, ``meta["query_gallery_index"]`` = each query's gallery position;
    the junk rules belong to ``reid_utils.eval.ranking``; ``protocol ==
    "official-mars"``. Junk is removed from the training set in both.

    Args:
        root: directory holding ``bbox_train/``, ``bbox_test/``, ``info/``.
        official: the official MARS evaluation convention (gallery = all test
            tracks incl. queries and junk); default: the torchreid split.
        gallery_includes_queries: alias of ``official``.
        check_frames: ``"first"`` (first and last frame of every tracklet
            must exist and the first frame of each split must decode; cheap),
            ``"all"`` (every frame must exist) or ``"none"`` (no disk access
            beyond the info/ files).
        annotations: optional per-frame annotation CSV to attach.
        name: dataset name recorded on the result.
    """
    if gallery_includes_queries is not None:
        official = bool(gallery_includes_queries)
    expected = "bbox_train/, bbox_test/ and info/ (MARS layout)"
    root = dataset_root(root, name, expected)
    info = require_dir(root / "info", "the MARS info/ folder with *_name.txt and *.mat files")
    for split in ("train", "test"):
        require_dir(root / f"bbox_{split}", f"the MARS frame folder bbox_{split}/<pid>/")
    ann = Annotations(Path(annotations)) if annotations is not None else None
    tracks = {}
    for split in ("train", "test"):
        names_path = info / f"{split}_name.txt"
        mat_path = info / f"tracks_{split}_info.mat"
        names = _read_names(names_path)
        rows = _read_mat(mat_path, f"track_{split}_info", ncols=4)
        tracks[split] = _mars_tracks(root, split, names, rows, mat_path, names_path, check_frames, ann)
    qidx = _query_rows(info, len(tracks["test"]))
    train = [t for t in tracks["train"] if t.pid != -1]
    query, gallery, meta, protocol = _split_test(tracks["train"], train, tracks["test"], qidx, official)
    if ann is not None:
        meta["annotation_fields"] = ann.fields
    if check_frames != "none":
        probe_splits(train, query, gallery)
    return VideoDataset(
        name=name, root=str(root), train=train, query=query, gallery=gallery, protocol=protocol, meta=meta
    )
