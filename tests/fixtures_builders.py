"""Tiny dataset trees in the exact on-disk layouts, built at test time.

Frames are small generated images whose colour encodes (pid, camera, frame
number), so tests can check that a loader returns frames in the right order
by decoding them. Nothing here is committed as an image file.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

ANNOT_FIELDS = ("true_pid", "occlusion", "empty", "id_switch", "bad_crop", "blur")


def frame_colour(pid: int, cam: int, fnum: int) -> tuple[int, int, int]:
    """Colour that encodes a frame; green channel = frame number (mod 256)."""
    return ((pid * 37) % 256, fnum % 256, (cam * 60) % 256)


def write_image(path: Path, colour, size=(8, 4)) -> None:
    """A flat-colour (H, W) = size image; JPEG or PNG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size[1], size[0]), tuple(int(c) for c in colour))
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    buf = io.BytesIO()
    im.save(buf, format=fmt, quality=100) if fmt == "JPEG" else im.save(buf, format=fmt)
    path.write_bytes(buf.getvalue())


# ---------------------------------------------------------------------------
# MARS
# ---------------------------------------------------------------------------
# (pid, camid 1-based, number of frames); pid -1 = junk, 0 = distractor
MARS_TRAIN = [(1, 1, 5), (1, 2, 3), (3, 1, 4), (3, 3, 2), (5, 2, 3), (5, 4, 6)]
MARS_TEST = [
    (2, 1, 4),
    (2, 2, 3),
    (2, 1, 2),
    (4, 3, 3),
    (4, 4, 5),
    (0, 2, 2),
    (-1, 5, 2),
    (4, 5, 4),
    (6, 6, 3),
    (6, 1, 2),
    (-1, 1, 1),
]
MARS_QUERY_IDX = [1, 4, 9]  # 1-based rows of MARS_TEST: pid 2 cam1, pid 4 cam3, pid 6 cam6


def mars_name(pid: int, cam: int, tnum: int, fnum: int) -> str:
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{tnum:04d}F{fnum:03d}.jpg"


def make_mars_tree(
    root: Path, train=MARS_TRAIN, test=MARS_TEST, query_idx=MARS_QUERY_IDX, annotations: bool = False
) -> dict:
    """Write a MARS tree; return what a loader should find.

    Returns:
        dict with ``root``, ``names`` (split -> list of names),
        ``rows`` (split -> (N, 4) int array), ``query_idx`` (1-based).
    """
    root = Path(root)
    info = root / "info"
    info.mkdir(parents=True, exist_ok=True)
    out = {"root": root, "names": {}, "rows": {}, "query_idx": list(query_idx)}
    ann_rows = []
    for split, spec in (("train", train), ("test", test)):
        names, rows, tcount = [], [], {}
        for pid, cam, n in spec:
            tnum = tcount[(pid, cam)] = tcount.get((pid, cam), 0) + 1
            start = len(names) + 1
            for f in range(1, n + 1):
                nm = mars_name(pid, cam, tnum, f)
                names.append(nm)
                write_image(root / f"bbox_{split}" / nm[:4] / nm, frame_colour(pid, cam, f))
                true_pid = pid if f != 2 else 999  # an identity switch on frame 2
                ann_rows.append([split, nm, true_pid, f % 2, int(f == 3), int(f == 2), int(f == 4), 0])
            rows.append([start, len(names), pid, cam])
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        arr = np.array(rows, dtype=np.float64)
        scipy.io.savemat(str(info / f"tracks_{split}_info.mat"), {f"track_{split}_info": arr})
        out["names"][split] = names
        out["rows"][split] = np.array(rows, dtype=np.int64)
    scipy.io.savemat(str(info / "query_IDX.mat"), {"query_IDX": np.array(query_idx, dtype=np.float64)[None, :]})
    if annotations:
        with open(info / "annotations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(("split", "name") + ANNOT_FIELDS)
            w.writerows(ann_rows)
    return out


# ---------------------------------------------------------------------------
# DukeMTMC-VideoReID
# ---------------------------------------------------------------------------
# split -> list of (pid, tracklet dir, cam 1-based, F indices, naming scheme)
DUKE_SPEC = {
    "train": [
        (1, "0001", 1, [1, 2, 3, 4], "old"),
        (1, "0002", 3, [2, 3, 5, 6, 10], "new"),  # starts at F0002, skips F0004
        (7, "0001", 2, [1, 2, 3], "new"),
    ],
    "query": [
        (11, "0001", 5, [2, 3, 4, 7, 8, 9, 11], "old"),  # starts at F0002, skips indices
        (12, "0003", 6, [1, 2, 3], "new"),
    ],
    "gallery": [
        (11, "0002", 6, [1, 2, 3, 4], "new"),
        (12, "0001", 8, [5, 6, 7], "old"),
        (13, "0001", 1, [8, 9, 10, 11, 12], "unpadded"),  # F8..F12: '10' < '8' lexicographically
    ],
}


def duke_name(pid: int, cam: int, f: int, scheme: str) -> str:
    x = 30000 + 7 * f
    if scheme == "old":
        return f"{pid:04d}C{cam}F{f:04d}X{x}.jpg"
    if scheme == "new":
        return f"{pid:04d}_C{cam}_F{f:04d}_X{x}.jpg"
    return f"{pid:04d}_C{cam}_F{f}_X{x}.jpg"


def make_duke_tree(root: Path, spec=DUKE_SPEC, seed: int = 0) -> dict:
    """Write a DukeMTMC-VideoReID tree with frames created in shuffled order.

    Returns:
        dict split -> list of (pid, camid 0-based, [F indices in order], tid).
    """
    root = Path(root)
    rng = random.Random(seed)
    out = {}
    for split, tracks in spec.items():
        out[split] = []
        for pid, tdir, cam, fidx, scheme in tracks:
            d = root / split / f"{pid:04d}" / tdir
            shuffled = list(fidx)
            rng.shuffle(shuffled)
            for f in shuffled:
                write_image(d / duke_name(pid, cam, f, scheme), frame_colour(pid, cam, f))
            out[split].append((pid, cam - 1, sorted(fidx), f"{split}/{pid:04d}/{tdir}"))
    return out


# ---------------------------------------------------------------------------
# PRID2011
# ---------------------------------------------------------------------------
# person -> (frames in cam_a, frames in cam_b); 0 = absent from that camera
PRID_SPEC = {
    1: (21, 22),
    2: (23, 21),
    3: (24, 25),
    4: (21, 21),
    5: (22, 23),
    6: (25, 21),
    7: (25, 20),  # too short in cam_b: excluded
    8: (30, 0),  # only in cam_a: excluded
    9: (0, 12),
}  # only in cam_b: excluded
PRID_UNPADDED = {2, 5}  # persons whose frames are named 1.png, 2.png, ... (not 0001.png)


def make_prid_tree(root: Path, spec=PRID_SPEC, unpadded=PRID_UNPADDED, seed: int = 0) -> dict:
    """Write ``multi_shot/{cam_a,cam_b}/person_XXXX/NNNN.png``.

    Returns:
        dict with ``eligible`` (persons with >= 21 frames in both cameras) and
        ``counts`` ((person, cam 0/1) -> number of frames).
    """
    root = Path(root)
    rng = random.Random(seed)
    counts = {}
    for pid, ns in spec.items():
        for c, (cam, n) in enumerate(zip(("cam_a", "cam_b"), ns)):
            if n == 0:
                continue
            counts[(pid, c)] = n
            order = list(range(1, n + 1))
            rng.shuffle(order)
            for f in order:
                name = f"{f}.png" if pid in unpadded else f"{f:04d}.png"
                write_image(
                    root / "multi_shot" / cam / f"person_{pid:04d}" / name, frame_colour(pid, c, f), size=(4, 2)
                )
    eligible = sorted(p for p, (a, b) in spec.items() if a >= 21 and b >= 21)
    return {"root": root, "eligible": eligible, "counts": counts}


def decode_green(path: str) -> int:
    """Frame number encoded by :func:`frame_colour` (mod 256)."""
    with Image.open(path) as im:
        return int(np.asarray(im.convert("RGB"))[..., 1].mean().round())


def free_port() -> int:
    """A free localhost TCP port (the rendezvous of the multi-process tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
