"""DukeMTMC-VideoReID loader (Wu et al., CVPR 2018; paper Sec. 4.1).

Layout: ``{train,query,gallery}/<pid>/<tracklet>/<frame>.jpg`` with frame names
``0001C6F0099X30823.jpg`` (old release) or ``0001_C6_F0099_X30823.jpg`` (new
release). Frames are ordered by their F index *numerically*; tracklets may start at
F0002 or skip an index. Query and gallery are given by the release (protocol
``"duke"``, evaluated with the torchreid convention). A missing or empty ``train/``
loads for evaluation with ``train == []``. The root may be the dataset folder or up to
two levels above it (``reid-data/dukemtmc-vidreid/DukeMTMC-VideoReID/``): the folder is
the one holding ``query/`` and ``gallery/`` with Duke-named frames (:data:`LAYOUT`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reid_utils.data.discover import Layout, find_dataset_root
from reid_utils.data.tracklets import (
    DatasetError,
    Tracklet,
    VideoDataset,
    is_image,
    probe_splits,
    require_dir,
)

LAYOUT_MARKERS = ("query", "gallery")  # top-level folders that identify the layout
_DUKE_NAME = re.compile(r"^(-?\d+)_?C(\d+)_?F(\d+)(?:_?X(\d+))?\.\w+$", re.IGNORECASE)
_FRAME_EXAMPLE = "<pid>/<tracklet>/0001C6F0099X30823.jpg (or 0001_C6_F0099_X30823.jpg)"
_PEEK = 8  # folders per level looked at by folder_problem


def _first_image(sdir: Path) -> Path | None:
    """The first image in ``sdir``, ``sdir/<pid>/`` or ``sdir/<pid>/<tracklet>/`` (sorted; a few
    folders per level looked at), if any."""
    level = [sdir]
    for _ in range(3):
        nxt = []
        for d in level:
            try:
                entries = sorted(os.scandir(d), key=lambda e: e.name)
            except OSError:
                continue
            img = next((e for e in entries if e.is_file() and is_image(e.name)), None)
            if img is not None:
                return Path(img.path)
            nxt.extend(Path(e.path) for e in entries if e.is_dir())
        level = nxt[:_PEEK]
    return None


def folder_problem(folder: Path) -> str | None:
    """Whether ``folder`` (holding ``query/`` and ``gallery/``) is a DukeMTMC-VideoReID folder.

    Cheap: the first image found under ``query/`` (else ``gallery/``) must be a Duke-named
    frame at ``<split>/<pid>/<tracklet>/`` (an image dataset's ``query/*.jpg`` is not). A
    tree without any image yet counts (the loader then says what is missing).

    Returns:
        None if it is, else why not (for :mod:`reid_utils.data.discover` messages).
    """
    for split in ("query", "gallery"):
        frame = _first_image(folder / split)
        if frame is not None:
            rel = frame.relative_to(folder)
            if len(rel.parts) == 4 and _DUKE_NAME.match(frame.name):
                return None
            return (
                f"holds query/ and gallery/ but {rel} is not a DukeMTMC-VideoReID frame "
                f"(expected {split}/{_FRAME_EXAMPLE})"
            )
    return None


LAYOUT = Layout(
    title="DukeMTMC-VideoReID",
    markers=LAYOUT_MARKERS,
    expected=f"query/ and gallery/ (and train/ to train) of {_FRAME_EXAMPLE} frames",
    related=("train",),
    check=folder_problem,
)


def _duke_tracklet(tdir: Path, split: str, pid: int) -> Tracklet:
    entries = sorted(e for e in os.listdir(tdir) if is_image(e))
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
    if split == "train" and not (root / split).exists():
        return []
    sdir = require_dir(root / split, f"the DukeMTMC-VideoReID {split}/<pid>/<tracklet>/ folder")
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
    if not out and split != "train":
        raise DatasetError(f"{sdir} holds no <pid>/<tracklet>/ folders; expected tracklets")
    return out


def load_duke(root) -> VideoDataset:
    """Load DukeMTMC-VideoReID (``{train,query,gallery}/<pid>/<tracklet>/``, see the module docstring).

    Args:
        root: the folder holding ``query/``, ``gallery/`` (and ``train/``), or a folder up to
            two levels above it.

    Returns:
        VideoDataset (protocol ``"duke"``); without training tracklets ``train == []`` and
        ``meta["no_train"]`` says why.
    """
    root = find_dataset_root(root, LAYOUT, "dukemtmc-videoreid")
    train, query, gallery = (_duke_split(root, s) for s in ("train", "query", "gallery"))
    probe_splits(train, query, gallery)
    meta = {}
    if not train:
        tdir = root / "train"
        meta["no_train"] = f"{tdir} {'holds no <pid>/<tracklet>/ folders' if tdir.exists() else 'is absent'}"
    return VideoDataset(
        name="dukemtmc-videoreid", root=str(root), train=train, query=query, gallery=gallery, protocol="duke", meta=meta
    )
