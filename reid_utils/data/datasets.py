"""Video re-ID dataset loaders: MARS, DukeMTMC-VideoReID, PRID2011, synthetic.

The paper evaluates on MARS, DukeMTMC-VideoReID and PRID2011 (Sec. 4.1) with
the usual protocols of [44], [38] and [37]. This module turns each dataset's
on-disk layout into lists of :class:`Tracklet` (``train``, ``query``,
``gallery``) with ordered absolute frame paths, the person id and a 0-based
camera id. The softmax loss of Eq. (8) needs contiguous labels for the C
training identities: ``VideoDataset.train_pid2label``.

Layouts (see DESIGN.md, "Real datasets"):

* ``mars``: ``bbox_train/``, ``bbox_test/``, ``info/{train,test}_name.txt``,
  ``info/tracks_{train,test}_info.mat`` (variables ``track_train_info`` /
  ``track_test_info``; rows ``start, end, pid, camid``; start/end 1-based and
  inclusive into the name list; camid 1..6) and ``info/query_IDX.mat``
  (variable ``query_IDX``, 1-based rows of the test tracks). Frame names
  ``PPPPCcTttttFfff.jpg``, junk pid -1 written ``00-1``; a frame lives at
  ``<root>/bbox_<split>/<name[:4]>/<name>``.

  Two evaluation conventions (choose with ``official``):

  - ``official=False`` (default, the torchreid / most-PyTorch-code split):
    query = the ``query_IDX`` rows, gallery = the remaining test tracks; junk
    (pid -1) removed from train, query and gallery; distractors (pid 0) kept
    in the gallery. ``dataset.protocol == "torchreid"``.
  - ``official=True`` (the official MARS MATLAB evaluation): gallery = *all*
    test tracks in ``tracks_test_info`` order, including the queries and the
    junk tracks; ``dataset.meta["query_gallery_index"]`` gives each query's
    position in the gallery. The junk rules themselves (pid -1 and
    same-pid-same-camera gallery entries ignored) belong to
    ``reid_utils.evaluation``. ``dataset.protocol == "official-mars"``. Junk is
    removed from the training set in both conventions (it has no identity to
    learn).

* ``dukemtmc-videoreid``: ``{train,query,gallery}/<pid>/<tracklet>/<frame>.jpg``
  with frame names ``0001C6F0099X30823.jpg`` (old release) or
  ``0001_C6_F0099_X30823.jpg`` (new release). Frames are ordered by their F
  index *numerically*; tracklets may start at F0002 or skip an index.
* ``prid2011``: ``multi_shot/{cam_a,cam_b}/person_XXXX/NNNN.png``; frames
  sorted numerically; persons with at least ``min_frames`` (21) frames in both
  cameras (178 in the real data) are split half/half into train/test by 10
  random splits (protocol of [37]); query = cam_a tracklets of the test
  persons, gallery = cam_b tracklets of the test persons, train = both cameras
  of the train persons. The splits are read from ``<root>/splits_prid2011.json``
  when present: a JSON list of 10 objects ``{"train": [...], "test": [...]}``
  whose entries are person numbers (``1``) or directory names
  (``"person_0001"``). Otherwise they are generated deterministically from
  ``seed`` and saved there atomically (or to ``splits_path``); if the file
  cannot be written (read-only root) a warning is issued and the generated
  splits are used anyway (they are reproducible from the seed).
* ``synthetic``: ``reid_utils.synth.ensure_synthetic(synth_cfg, cache_root)``
  builds (or reuses) the embedded benchmark in the MARS layout plus
  ``info/annotations.csv`` (header ``split,name,true_pid,occlusion,empty,
  id_switch,bad_crop,blur``, one row per frame); it is read by the MARS loader
  and each tracklet gets ``annotations``: a read-only numpy structured array
  aligned with ``frames`` (``t.annotations["occlusion"][i]`` is frame i's flag).

Bad input (missing root, wrong layout, inconsistent .mat rows, empty
tracklets, unparsable frame names, undecodable sample frame) raises one
:class:`DatasetError` naming the path and what was expected. Every frame's
*decodability* is not checked at load time (1M frames for MARS); the frame
loader (``reid_utils.transforms``) raises :class:`DatasetError` naming the file
when one cannot be decoded.
"""

from __future__ import annotations

import csv
import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATASET_NAMES = ("mars", "dukemtmc-videoreid", "prid2011", "synthetic")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
PRID_SPLITS_FILE = "splits_prid2011.json"


class DatasetError(ValueError):
    """Missing or malformed dataset on disk; the message names the path."""


@dataclass(frozen=True, repr=False)
class Tracklet:
    """One video sequence (tracklet) of one person seen by one camera.

    Attributes:
        frames: ordered absolute paths of the T frames.
        pid: person id (MARS: -1 junk, 0 distractor).
        camid: 0-based camera id.
        tid: readable identifier, e.g. ``"bbox_test/0001C1T0001"``,
            ``"gallery/0001/0003"``, ``"cam_a/person_0001"``.
        index: position in the source listing (MARS: 0-based row of
            ``tracks_*_info.mat``), -1 when meaningless.
        annotations: optional per-frame ground truth (synthetic set): a
            read-only numpy structured array of length T aligned with
            ``frames``; ``None`` for real datasets.
    """

    frames: tuple
    pid: int
    camid: int
    tid: str = ""
    index: int = -1
    annotations: Any = field(default=None, compare=False, hash=False, repr=False)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        first = self.frames[0] if self.frames else None
        return (
            f"Tracklet(tid={self.tid!r}, pid={self.pid}, camid={self.camid}, "
            f"num_frames={len(self.frames)}, first={first!r}"
            f"{', annotated' if self.annotations is not None else ''})"
        )


@dataclass
class VideoDataset:
    """A loaded dataset: train / query / gallery tracklet lists.

    Attributes:
        name: one of ``DATASET_NAMES``.
        root: absolute dataset root.
        train, query, gallery: lists of :class:`Tracklet`.
        train_pid2label: training pid -> contiguous label in 0..C-1 (Eq. 8).
        protocol: evaluation convention of the query/gallery split
            (``"torchreid"``, ``"official-mars"``, ``"duke"``, ``"prid-split<k>"``).
        meta: loader-specific extras (e.g. ``query_gallery_index``).
    """

    name: str
    root: str
    train: list
    query: list
    gallery: list
    protocol: str = ""
    meta: dict = field(default_factory=dict)
    train_pid2label: dict = field(init=False)

    def __post_init__(self):
        pids = sorted({t.pid for t in self.train})
        self.train_pid2label = {p: i for i, p in enumerate(pids)}

    @property
    def num_train_pids(self) -> int:
        return len(self.train_pid2label)

    def train_labels(self) -> np.ndarray:
        """(N_train,) int64 contiguous labels of the training tracklets."""
        return np.array([self.train_pid2label[t.pid] for t in self.train], dtype=np.int64)

    def statistics(self, verbose: bool = False) -> dict:
        """See :func:`dataset_statistics`."""
        return dataset_statistics(self, verbose=verbose)

    def __repr__(self) -> str:
        return (
            f"VideoDataset({self.name!r}, protocol={self.protocol!r}, "
            f"train={len(self.train)}, query={len(self.query)}, "
            f"gallery={len(self.gallery)}, train_pids={self.num_train_pids}, root={self.root!r})"
        )


# ---------------------------------------------------------------------------
# small checks shared by the loaders
# ---------------------------------------------------------------------------
def id_arrays(tracklets: Sequence[Tracklet]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(pids, camids)`` of a list of tracklets, as two (N,) int64 arrays (what
    ``evaluate_rank`` takes)."""
    pids = np.array([t.pid for t in tracklets], dtype=np.int64)
    camids = np.array([t.camid for t in tracklets], dtype=np.int64)
    return pids, camids


def _require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise DatasetError(f"{path} {state}: expected {what}")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: expected {what}")
    return path


def _root(root, name: str, expected: str) -> Path:
    if root is None or str(root) == "":
        raise DatasetError(f"load_dataset({name!r}): no root given; expected the dataset directory holding {expected}")
    return _require_dir(os.path.abspath(os.path.expanduser(str(root))), f"the {name} root holding {expected}")


def _probe_frame(path: str) -> None:
    """Decode one frame cheaply (header + verify) so a broken tree fails at load time."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist: expected a frame image") from None
    except Exception as e:  # PIL raises several types for undecodable files
        raise DatasetError(f"{path} cannot be decoded as an image ({e}); expected a JPEG/PNG frame") from None


def _probe_splits(*splits: Sequence[Tracklet]) -> None:
    for tracks in splits:
        if tracks:
            _probe_frame(tracks[0].frames[0])


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTS)


# ---------------------------------------------------------------------------
# MARS (and the synthetic benchmark, which shares its layout)
# ---------------------------------------------------------------------------
_MARS_NAME = re.compile(r"^(\d{4}|00-1)C(\d)T(\d+)F(\d+)\.\w+$")


def _read_names(path: Path) -> list[str]:
    _require_file(path, "a text file with one frame name per line")
    with open(path) as f:
        names = [ln.strip() for ln in f]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"{path} is empty: expected one frame name per line")
    return names


def _read_mat(path: Path, var: str, ncols: int | None = None) -> np.ndarray:
    import scipy.io

    _require_file(path, f"a MATLAB file holding the variable {var!r}")
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


def _mars_tracks(
    root: Path,
    split: str,
    names: list[str],
    info: np.ndarray,
    mat_path: Path,
    names_path: Path,
    check_frames: str,
    ann: _Annotations | None,
) -> list[Tracklet]:
    folder = root / f"bbox_{split}"
    n = len(names)
    out = []
    for r, row in enumerate(info):
        start, end, pid, cam = (int(v) for v in row[:4])
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


class _Annotations:
    """Per-frame annotation table (``info/annotations.csv``) indexed by (split, name)."""

    def __init__(self, path: Path):
        self.path = _require_file(path, "the per-frame annotation table (split,name,true_pid,occlusion,...)")
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


def load_mars(
    root,
    official: bool = False,
    gallery_includes_queries: bool | None = None,
    check_frames: str = "first",
    annotations: str | Path | None = None,
    name: str = "mars",
) -> VideoDataset:
    """Load MARS (layout in the module docstring).

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
    root = _root(root, name, expected)
    info = _require_dir(root / "info", "the MARS info/ folder with *_name.txt and *.mat files")
    for split in ("train", "test"):
        _require_dir(root / f"bbox_{split}", f"the MARS frame folder bbox_{split}/<pid>/")
    ann = _Annotations(Path(annotations)) if annotations is not None else None
    tracks = {}
    for split in ("train", "test"):
        names_path = info / f"{split}_name.txt"
        mat_path = info / f"tracks_{split}_info.mat"
        names = _read_names(names_path)
        rows = _read_mat(mat_path, f"track_{split}_info", ncols=4)
        tracks[split] = _mars_tracks(root, split, names, rows, mat_path, names_path, check_frames, ann)
    q_path = info / "query_IDX.mat"
    qidx = _read_mat(q_path, "query_IDX").ravel() - 1
    test = tracks["test"]
    if qidx.size == 0 or qidx.min() < 0 or qidx.max() >= len(test):
        raise DatasetError(
            f"{q_path}: query_IDX must hold 1-based rows of "
            f"tracks_test_info.mat in 1..{len(test)}; got range "
            f"{qidx.min() + 1 if qidx.size else None}..{qidx.max() + 1 if qidx.size else None}"
        )
    if len(np.unique(qidx)) != len(qidx):
        raise DatasetError(f"{q_path}: query_IDX has repeated rows; expected distinct test tracks")
    train = [t for t in tracks["train"] if t.pid != -1]
    if official:
        query = [test[i] for i in qidx]
        gallery = list(test)
        meta = {"query_gallery_index": qidx.copy(), "num_junk_train": len(tracks["train"]) - len(train)}
        protocol = "official-mars"
    else:
        qset = set(qidx.tolist())
        query = [test[i] for i in qidx if test[i].pid != -1]
        gallery = [t for i, t in enumerate(test) if i not in qset and t.pid != -1]
        meta = {"num_junk_removed": sum(t.pid == -1 for t in tracks["train"] + test)}
        protocol = "torchreid"
    if ann is not None:
        meta["annotation_fields"] = ann.fields
    if check_frames != "none":
        _probe_splits(train, query, gallery)
    return VideoDataset(
        name=name, root=str(root), train=train, query=query, gallery=gallery, protocol=protocol, meta=meta
    )


# ---------------------------------------------------------------------------
# DukeMTMC-VideoReID
# ---------------------------------------------------------------------------
_DUKE_NAME = re.compile(r"^(-?\d+)_?C(\d+)_?F(\d+)(?:_?X(\d+))?\.\w+$", re.IGNORECASE)


def _duke_tracklet(tdir: Path, split: str, pid: int) -> Tracklet:
    entries = sorted(e for e in os.listdir(tdir) if _is_image(e))
    if not entries:
        raise DatasetError(
            f"{tdir} holds no frames: expected a non-empty tracklet of <pid>C<cam>F<frame>X<...>.jpg images"
        )
    keyed = []
    cams = set()
    for e in entries:
        m = _DUKE_NAME.match(e)
        if m is None:
            raise DatasetError(
                f"{tdir / e}: frame name does not match 0001C6F0099X30823.jpg or 0001_C6_F0099_X30823.jpg"
            )
        if int(m.group(1)) != pid:
            raise DatasetError(
                f"{tdir / e}: frame name has pid {int(m.group(1))} but the folder says {pid}; expected them to agree"
            )
        cams.add(int(m.group(2)))
        keyed.append((int(m.group(3)), e))
    if len(cams) != 1:
        raise DatasetError(f"{tdir}: frames from cameras {sorted(cams)}; expected one camera per tracklet")
    keyed.sort()
    fidx = [k for k, _ in keyed]
    if len(set(fidx)) != len(fidx):
        dup = next(f for f, g in zip(fidx, fidx[1:]) if f == g)
        raise DatasetError(f"{tdir}: two frames share the index F{dup:04d}; expected one frame per index")
    cam = cams.pop()
    if cam < 1:
        raise DatasetError(f"{tdir}: camera C{cam}; expected 1-based camera ids")
    frames = tuple(os.path.join(str(tdir), e) for _, e in keyed)
    return Tracklet(frames=frames, pid=pid, camid=cam - 1, tid=f"{split}/{tdir.parent.name}/{tdir.name}")


def _duke_split(root: Path, split: str) -> list[Tracklet]:
    sdir = _require_dir(root / split, f"the DukeMTMC-VideoReID {split}/<pid>/<tracklet>/ folder")
    out = []
    for pdir in sorted(p for p in sdir.iterdir() if p.is_dir()):
        try:
            pid = int(pdir.name)
        except ValueError:
            raise DatasetError(
                f"{pdir}: folder name is not a person id; expected {split}/<pid digits>/<tracklet>/"
            ) from None
        tdirs = sorted(t for t in pdir.iterdir() if t.is_dir())
        if not tdirs:
            raise DatasetError(f"{pdir} holds no tracklet folders; expected {split}/<pid>/<tracklet>/")
        for tdir in tdirs:
            out.append(_duke_tracklet(tdir, split, pid))
    if not out:
        raise DatasetError(f"{sdir} holds no <pid>/<tracklet>/ folders; expected tracklets")
    return out


def load_duke(root) -> VideoDataset:
    """Load DukeMTMC-VideoReID (``{train,query,gallery}/<pid>/<tracklet>/``)."""
    root = _root(root, "dukemtmc-videoreid", "train/, query/ and gallery/")
    train, query, gallery = (_duke_split(root, s) for s in ("train", "query", "gallery"))
    _probe_splits(train, query, gallery)
    return VideoDataset(
        name="dukemtmc-videoreid", root=str(root), train=train, query=query, gallery=gallery, protocol="duke"
    )


# ---------------------------------------------------------------------------
# PRID2011
# ---------------------------------------------------------------------------
_PRID_PERSON = re.compile(r"^person_(\d+)$")


def _prid_frames(pdir: Path) -> tuple:
    keyed = []
    for e in os.listdir(pdir):
        if not _is_image(e):
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


def _person_id(x, path) -> int:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    if isinstance(x, str):
        m = _PRID_PERSON.match(x)
        if m:
            return int(m.group(1))
        if x.isdigit():
            return int(x)
    raise DatasetError(f"{path}: split entry {x!r} is not a person; expected an int or 'person_XXXX'")


def read_prid_splits(path: str | Path) -> list[dict]:
    """Read a PRID2011 splits JSON: a list of ``{"train": [...], "test": [...]}``.

    Entries may be ints (``1``) or directory names (``"person_0001"``).

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
    out = []
    for k, s in enumerate(raw):
        tr = sorted(_person_id(x, path) for x in s["train"])
        te = sorted(_person_id(x, path) for x in s["test"])
        if set(tr) & set(te):
            raise DatasetError(
                f"{path}: split {k} has persons in both train and test "
                f"({sorted(set(tr) & set(te))[:5]}); expected disjoint sets"
            )
        out.append({"train": tr, "test": te})
    return out


def make_prid_splits(persons: Iterable[int], num_splits: int = 10, seed: int = 0) -> list[dict]:
    """``num_splits`` random half/half train/test splits of ``persons`` (deterministic).

    With an odd count the extra person goes to test.
    """
    persons = np.array(sorted(persons), dtype=np.int64)
    rng = np.random.default_rng(seed)
    half = len(persons) // 2
    out = []
    for _ in range(num_splits):
        perm = rng.permutation(persons)
        out.append({"train": sorted(perm[:half].tolist()), "test": sorted(perm[half:].tolist())})
    return out


def load_prid(
    root,
    split_id: int = 0,
    splits_path: str | Path | None = None,
    seed: int = 0,
    min_frames: int = 21,
    num_splits: int = 10,
) -> VideoDataset:
    """Load PRID2011 multi-shot with split ``split_id`` (see module docstring).

    Args:
        root: directory holding ``multi_shot/cam_a`` and ``multi_shot/cam_b``.
        split_id: which of the splits to use (0..num_splits-1).
        splits_path: where to read/write the splits JSON (default
            ``<root>/splits_prid2011.json``).
        seed: seed of generated splits.
        min_frames: persons need at least this many frames in both cameras.
    """
    root = _root(root, "prid2011", "multi_shot/cam_a and multi_shot/cam_b")
    ms = _require_dir(root / "multi_shot", "the PRID2011 multi_shot/ folder")
    cams = [
        _prid_camera(_require_dir(ms / c, f"the PRID2011 camera folder {c}/person_XXXX/")) for c in ("cam_a", "cam_b")
    ]
    both = sorted(set(cams[0]) & set(cams[1]))
    eligible = [p for p in both if min(len(cams[0][p]), len(cams[1][p])) >= min_frames]
    if not eligible:
        raise DatasetError(
            f"{ms}: no person has >= {min_frames} frames in both cam_a and cam_b; "
            f"expected person_XXXX folders present in both cameras"
        )
    spath = Path(splits_path) if splits_path is not None else root / PRID_SPLITS_FILE
    if spath.is_file():
        splits = read_prid_splits(spath)
        source = str(spath)
    else:
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
    if not 0 <= split_id < len(splits):
        raise ValueError(f"split_id={split_id}: expected 0..{len(splits) - 1} ({source})")
    split = splits[split_id]
    missing = sorted(set(split["train"] + split["test"]) - set(both))
    if missing:
        raise DatasetError(
            f"{spath}: split {split_id} names persons {missing[:5]} that are not in both {ms}/cam_a and cam_b"
        )

    def tracks(pids, cam_ids):
        return [
            Tracklet(frames=cams[c][p], pid=p, camid=c, tid=f"{('cam_a', 'cam_b')[c]}/person_{p:04d}", index=p)
            for p in pids
            for c in cam_ids
        ]

    train = tracks(split["train"], (0, 1))
    query = tracks(split["test"], (0,))
    gallery = tracks(split["test"], (1,))
    _probe_splits(train, query, gallery)
    return VideoDataset(
        name="prid2011",
        root=str(root),
        train=train,
        query=query,
        gallery=gallery,
        protocol=f"prid-split{split_id}",
        meta={
            "split_id": split_id,
            "splits_source": source,
            "num_eligible_persons": len(eligible),
            "min_frames": min_frames,
        },
    )


# ---------------------------------------------------------------------------
# synthetic
# ---------------------------------------------------------------------------
def load_synthetic(root=None, synth_cfg=None, cache_root=None, **mars_options) -> VideoDataset:
    """The embedded benchmark: generate (or reuse) it, then read it as MARS.

    Args:
        root: an already generated synthetic tree (then nothing is generated).
        synth_cfg: ``config.SynthConfig`` passed to ``synth.ensure_synthetic``.
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
    root = _root(root, "synthetic", "a MARS-layout tree with info/annotations.csv")
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

    ``cfg.dataset == "synthetic"`` generates/reuses the benchmark of
    ``cfg.synth`` under ``cfg.cache_root``; a real dataset is read from
    ``cfg.data_root``.
    """
    if cfg.dataset == "synthetic":
        if cfg.data_root:
            return load_dataset("synthetic", cfg.data_root, **options)
        return load_dataset("synthetic", None, synth_cfg=cfg.synth, cache_root=cfg.cache_root, **options)
    if not cfg.data_root:
        raise DatasetError(
            f"profile {cfg.profile!r} uses dataset {cfg.dataset!r} but no data_root "
            f"is set; expected the dataset directory (set $REID_DATA_ROOT)"
        )
    return load_dataset(cfg.dataset, cfg.data_root, **options)


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


def nuisance_summary(ds: VideoDataset, nuisances=("occlusion", "empty", "id_switch", "bad_crop", "blur")):
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


def most_affected(tracklets, num: int, nuisances=("occlusion", "empty", "id_switch", "bad_crop", "blur")) -> list:
    """The ``num`` annotated tracklets with the most nuisance frames (for contact sheets).

    Tracklets without annotations (real datasets) are skipped, so the result may be empty.
    """

    def load(t):
        a = t.annotations
        return sum(int((np.asarray(a[n], dtype=np.float64) > 0).sum()) for n in nuisances if n in a.dtype.names)

    annotated = [t for t in tracklets if t.annotations is not None]
    return sorted(annotated, key=load, reverse=True)[:num]
