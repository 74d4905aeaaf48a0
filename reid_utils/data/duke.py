"""DukeMTMC-VideoReID loader (Wu et al., CVPR 2018; paper Sec. 4.1).

Layout: ``{train,query,gallery}/<pid>/<tracklet>/<frame>.jpg`` with frame names
``0001C6F0099X30823.jpg`` (old release) or ``0001_C6_F0099_X30823.jpg`` (new
release). Frames are ordered by their F index *numerically*; tracklets may start at
F0002 or skip an index. Query and gallery are given by the release (protocol
``"duke"``, evaluated with the torchreid convention).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reid_utils.data.tracklets import (
    DatasetError,
    Tracklet,
    VideoDataset,
    dataset_root,
    is_image,
    probe_splits,
    require_dir,
)

LAYOUT_MARKERS = ("query", "gallery")  # top-level folders that identify the layout
_DUKE_NAME = re.compile(r"^(-?\d+)_?C(\d+)_?F(\d+)(?:_?X(\d+))?\.\w+$", re.IGNORECASE)


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
    if not out:
        raise DatasetError(f"{sdir} holds no <pid>/<tracklet>/ folders; expected tracklets")
    return out


def load_duke(root) -> VideoDataset:
    """Load DukeMTMC-VideoReID (``{train,query,gallery}/<pid>/<tracklet>/``, see the module docstring)."""
    root = dataset_root(root, "dukemtmc-videoreid", "train/, query/ and gallery/")
    train, query, gallery = (_duke_split(root, s) for s in ("train", "query", "gallery"))
    probe_splits(train, query, gallery)
    return VideoDataset(
        name="dukemtmc-videoreid", root=str(root), train=train, query=query, gallery=gallery, protocol="duke"
    )
