"""MARS loader (Zheng et al., ECCV 2016; paper Sec. 4.1), also used for the synthetic benchmark.

Layout: ``bbox_train/``, ``bbox_test/``, ``info/{train,test}_name.txt``,
``info/tracks_{train,test}_info.mat`` (variables ``track_train_info`` /
``track_test_info``; rows ``start, end, pid, camid``; start/end 1-based and inclusive
into the name list; camid 1..6) and ``info/query_IDX.mat`` (variable ``query_IDX``,
1-based rows of the test tracks). Frame names ``PPPPCcTttttFfff.jpg``, junk pid -1
written ``00-1``; a frame lives at ``<root>/bbox_<split>/<name[:4]>/<name>``.
The synthetic benchmark adds ``info/annotations.csv`` (per-frame nuisances), attached
to each tracklet as ``annotations`` (see :class:`Annotations`). Every file is read through
:mod:`reid_utils.data.validate`: every listed name must match the frame-name pattern, the
``.mat`` tables must hold finite integers inside the name list. A query/gallery-only tree
(no ``bbox_train/``, or empty train lists) loads with ``train == []``; the root may be the
MARS folder or up to two levels above it (:data:`LAYOUT`, :mod:`reid_utils.data.discover`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np

from reid_utils.data.discover import Layout, find_dataset_root
from reid_utils.data.tracklets import (
    DatasetError,
    Tracklet,
    VideoDataset,
    probe_splits,
    require_dir,
)
from reid_utils.data.validate import check_names, read_lines, read_mat_table, read_text

LAYOUT_MARKERS = ("info", "bbox_test")  # top-level folders that identify the layout
LAYOUT = Layout(
    title="MARS",
    markers=LAYOUT_MARKERS,
    expected="bbox_test/ and the MARS info/ folder (train_name.txt, test_name.txt, tracks_train_info.mat, "
    "tracks_test_info.mat, query_IDX.mat), and bbox_train/ to train",
    related=("bbox_train",),
)
_MARS_NAME = re.compile(r"^(\d{4}|00-1)C(\d)T(\d+)F(\d+)\.\w+$", re.ASCII)


MARS_NAME_EXPECTED = (
    "a MARS frame name PPPPCcTttttFfff.jpg (4-digit pid or 00-1, camera digit, tracklet "
    "and frame numbers, an extension; no path separators)"
)
_TRACK_COLUMNS = ("start", "end", "pid", "camid")


def _read_names(path: Path, allow_empty: bool = False) -> list[str]:
    """The frame names of a name list; every one must match :data:`_MARS_NAME`."""
    lines = read_lines(path, "a text file with one frame name per line", allow_empty)
    check_names(path, lines, _MARS_NAME, MARS_NAME_EXPECTED)
    return [n for _, n in lines]


def _mars_pid(prefix: str) -> int:
    return -1 if prefix == "00-1" else int(prefix)


def _row_names(r: int, row, names: list[str], mat_path: Path, names_path: Path) -> tuple[list[str], int, int]:
    """The frame names of ``.mat`` row ``r`` (0-based), checked against its pid and camera."""
    start, end, pid, cam = (int(v) for v in row[:4])
    if start > end:
        raise DatasetError(
            f"{mat_path}: row {r + 1} is an empty tracklet (start={start} > end={end}); expected start <= end"
        )
    tnames = names[start - 1 : end]
    prefixes = {nm[:6] for nm in tnames}
    m = _MARS_NAME.match(tnames[0])  # every name matches (checked by _read_names)
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
        what = "the per-frame annotation table (split,name,true_pid,occlusion,...)"
        self.path = Path(path)
        text = read_text(self.path, what)
        rows = [(i + 1, r) for i, r in enumerate(csv.reader(io.StringIO(text, newline="")))]
        header, body = _check_header(path, rows[0][1] if rows else None), [(i, r) for i, r in rows[1:] if r]
        bad = [i for i, r in body if len(r) != len(header)]
        if bad:
            raise DatasetError(
                f"{path}: line {bad[0]} has a different number of fields than the header ({len(header)}); "
                f"expected one value per column"
            )
        lines = [i for i, _ in body]
        cols = list(zip(*(r for _, r in body))) if body else [()] * len(header)
        arrays = [_parse_column(np.array(c, dtype=str), path, h, lines) for h, c in zip(header[2:], cols[2:])]
        self.table = np.rec.fromarrays(arrays, names=header[2:]).view(np.ndarray)
        self.table.setflags(write=False)
        self.index = {}
        for i, (split, name) in enumerate(zip(cols[0], cols[1])):
            key = (split.removeprefix("bbox_"), name)
            if key in self.index:
                raise DatasetError(
                    f"{path}: line {lines[i]} repeats frame {name!r} of split {split!r} "
                    f"(first on line {lines[self.index[key]]}); expected one row per frame"
                )
            self.index[key] = i
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


def _check_header(path: Path, header: list[str] | None) -> list[str]:
    if not header or header[:2] != ["split", "name"] or len(header) < 3:
        raise DatasetError(
            f"{path}: expected a header starting with 'split,name,' "
            f"followed by annotation columns; got {header if header else 'nothing'}"
        )
    if "" in header:
        raise DatasetError(f"{path}: the header {header} has an empty column name; expected named columns")
    twice = sorted(h for h in set(header) if header.count(h) > 1)
    if twice:
        raise DatasetError(f"{path}: the header names {twice[0]!r} twice; expected distinct column names")
    return header


def _parse_column(col: np.ndarray, path: Path, name: str, lines: list[int]) -> np.ndarray:
    """An annotation column as int64, else float64, else bool (``true``/``false``)."""
    for dtype in (np.int64, np.float64):
        try:
            return col.astype(dtype)
        except ValueError:
            pass
    low = np.char.lower(col)
    is_bool = np.isin(low, ["true", "false"])
    if is_bool.all():
        return low == "true"
    bad = np.flatnonzero([not (_is_number(v) or b) for v, b in zip(col, is_bool)])
    i = int(bad[0]) if bad.size else int(np.flatnonzero(is_bool)[0])  # else: numbers mixed with true/false
    raise DatasetError(
        f"{path}: column {name!r} has the value {str(col[i])!r} on line {lines[i]}; "
        f"expected numbers (or true/false) in every row"
    )


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _query_rows(info: Path, num_test: int) -> np.ndarray:
    """0-based test rows of ``info/query_IDX.mat``, checked."""
    q_path = info / "query_IDX.mat"
    qidx = read_mat_table(q_path, "query_IDX", ranges={0: (num_test, "the rows of tracks_test_info.mat")}) - 1
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


def _read_split(root: Path, split: str, check_frames: str, ann: Annotations | None) -> list[Tracklet]:
    """Every tracklet of ``split`` from its name list and ``.mat`` table.

    ``train`` may be empty: an empty name list with an empty table (a table is empty only
    when its name list is).
    """
    info = root / "info"
    names_path = info / f"{split}_name.txt"
    mat_path = info / f"tracks_{split}_info.mat"
    optional = split == "train"
    names = _read_names(names_path, allow_empty=optional)
    where = {0: (len(names), f"the {len(names)} names in {names_path}")}
    ranges = {**where, 1: where[0]}
    empty_ok = optional and not names
    rows = read_mat_table(mat_path, f"track_{split}_info", _TRACK_COLUMNS, ranges=ranges, allow_empty=empty_ok)
    return _mars_tracks(root, split, names, rows, mat_path, names_path, check_frames, ann)


def _no_train_reason(root: Path, has_train: bool, tracks: list) -> str | None:
    """Why the training split is empty (``meta["no_train"]``), or None when it is not."""
    if not has_train:
        return f"{root / 'bbox_train'} is absent"
    if not tracks:
        return f"{root / 'info' / 'tracks_train_info.mat'} lists no tracklets"
    return None if any(t.pid != -1 for t in tracks) else "every training tracklet is junk (pid -1)"


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

    Without ``bbox_train/`` (or with empty ``info/train_name.txt`` and
    ``tracks_train_info.mat``) the tree loads for evaluation: ``train == []`` and
    ``meta["no_train"]`` says why (training on it raises, see ``VideoDataset.require_train``).

    Args:
        root: the folder holding ``bbox_test/``, ``info/`` (and ``bbox_train/``), or a
            folder up to two levels above it (``root/MARS/...``).
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
    root = find_dataset_root(root, LAYOUT, name)
    info = require_dir(root / "info", "the MARS info/ folder with *_name.txt and *.mat files")
    require_dir(root / "bbox_test", "the MARS frame folder bbox_test/<pid>/")
    has_train = (root / "bbox_train").is_dir()
    ann = Annotations(Path(annotations)) if annotations is not None else None
    tracks = {"train": _read_split(root, "train", check_frames, ann) if has_train else []}
    tracks["test"] = _read_split(root, "test", check_frames, ann)
    qidx = _query_rows(info, len(tracks["test"]))
    train = [t for t in tracks["train"] if t.pid != -1]
    query, gallery, meta, protocol = _split_test(tracks["train"], train, tracks["test"], qidx, official)
    no_train = _no_train_reason(root, has_train, tracks["train"])
    if no_train is not None:
        meta["no_train"] = no_train
    if ann is not None:
        meta["annotation_fields"] = ann.fields
    if check_frames != "none":
        probe_splits(train, query, gallery)
    return VideoDataset(
        name=name, root=str(root), train=train, query=query, gallery=gallery, protocol=protocol, meta=meta
    )
