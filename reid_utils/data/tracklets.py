"""What every loader returns: :class:`Tracklet`, :class:`VideoDataset`, :class:`DatasetError`.

Paper Sec. 4.1: a video re-ID dataset is a set of tracklets (one person seen by one
camera) split into train, query and gallery; the softmax loss of Eq. (8) needs
contiguous labels for the C training identities (``VideoDataset.train_pid2label``).
Also here: :func:`id_arrays` (the one place tracklet pids/camids become arrays) and
the path checks and frame probe shared by the loaders of :mod:`reid_utils.data.mars`,
:mod:`reid_utils.data.duke` and :mod:`reid_utils.data.prid`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """Missing or malformed dataset on disk; the message names the path.

    Raised by the loaders (missing root, wrong layout, inconsistent .mat rows, empty
    tracklets, unparsable frame names, undecodable sample frame) and by the frame
    loader of :mod:`reid_utils.data.transforms` for a frame that cannot be decoded
    (frames are not all decoded at load time: MARS has 1M).
    """


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
        name: one of ``reid_utils.data.datasets.DATASET_NAMES``.
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

    def require_train(self, what: str) -> None:
        """Raise :class:`DatasetError` unless there are training tracklets (see :func:`require_train`)."""
        require_train(self, what)

    def statistics(self, verbose: bool = False) -> dict:
        """See :func:`reid_utils.data.datasets.dataset_statistics`."""
        from reid_utils.data.datasets import dataset_statistics

        return dataset_statistics(self, verbose=verbose)

    def __repr__(self) -> str:
        return (
            f"VideoDataset({self.name!r}, protocol={self.protocol!r}, "
            f"train={len(self.train)}, query={len(self.query)}, "
            f"gallery={len(self.gallery)}, train_pids={self.num_train_pids}, root={self.root!r})"
        )


def id_arrays(tracklets: Sequence[Tracklet]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(pids, camids)`` of a list of tracklets, as two (N,) int64 arrays (what
    ``reid_utils.eval.ranking.evaluate_rank`` takes)."""
    pids = np.array([t.pid for t in tracklets], dtype=np.int64)
    camids = np.array([t.camid for t in tracklets], dtype=np.int64)
    return pids, camids


def require_train(dataset, what: str) -> None:
    """Raise :class:`DatasetError` unless ``dataset.train`` holds tracklets.

    A tree with query and gallery but no training split (MARS without ``bbox_train/``,
    DukeMTMC-VideoReID without ``train/``) loads for evaluation with ``train == []``;
    whatever trains on it calls this first, so the error says why instead of failing later.

    Args:
        dataset: a :class:`VideoDataset` (or anything with ``.train``; ``.name``, ``.root``
            and ``.meta["no_train"]``, the loader's reason, are used when present).
        what: what needs the training split, e.g. ``"train_i3d"``.
    """
    if len(dataset.train):
        return
    name = getattr(dataset, "name", "the dataset")
    root = getattr(dataset, "root", None)
    why = (getattr(dataset, "meta", None) or {}).get("no_train", "its training split is empty")
    raise DatasetError(
        f"{what} needs training tracklets, but {name!s}{f' at {root}' if root else ''} has none ({why}): "
        f"it loads for evaluation only (query and gallery); expected a tree with a training split "
        f"(or a model trained on one)"
    )


# ---------------------------------------------------------------------------
# small checks shared by the loaders
# ---------------------------------------------------------------------------
def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path; :class:`DatasetError` (naming ``what``) unless it is a directory."""
    path = Path(path)
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise DatasetError(f"{path} {state}: expected {what}")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path``; :class:`DatasetError` (naming ``what``) unless it is a file."""
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: expected {what}")
    return path


def dataset_root(root, name: str, expected: str) -> Path:
    """The absolute dataset root of ``load_dataset(name, root)``, which must be a directory."""
    if root is None or str(root) == "":
        raise DatasetError(f"load_dataset({name!r}): no root given; expected the dataset directory holding {expected}")
    return require_dir(os.path.abspath(os.path.expanduser(str(root))), f"the {name} root holding {expected}")


def probe_frame(path: str) -> None:
    """Decode one frame cheaply (header + verify) so a broken tree fails at load time."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except FileNotFoundError:
        raise DatasetError(f"{path} does not exist: expected a frame image") from None
    except Exception as e:  # PIL raises several types for undecodable files
        raise DatasetError(f"{path} cannot be decoded as an image ({e}); expected a JPEG/PNG frame") from None


def probe_splits(*splits: Sequence[Tracklet]) -> None:
    """:func:`probe_frame` on the first frame of each non-empty split."""
    for tracks in splits:
        if tracks:
            probe_frame(tracks[0].frames[0])


def is_image(name: str) -> bool:
    """Whether a file name has an image extension (:data:`IMAGE_EXTS`, any case)."""
    return name.lower().endswith(IMAGE_EXTS)
