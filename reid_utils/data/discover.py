"""Finding a dataset folder from the root a user gives: the folder itself or up to two levels above it.

Datasets are kept as downloaded, e.g. ``reid-data/dukemtmc-vidreid/DukeMTMC-VideoReID/
{train,query,gallery}``, ``root/prid_2011/multi_shot/`` or ``root/MARS/{bbox_train,bbox_test,
info}``. Each loader describes its dataset folder by a :class:`Layout`: the marker folders it
must hold (MARS ``info/`` and ``bbox_test/``; DukeMTMC-VideoReID ``query/`` and ``gallery/``,
checked for Duke-named frames; PRID2011 ``multi_shot/``). :func:`search` looks at ``root`` and
at the folders up to :data:`MAX_DEPTH` levels below it (never inside a dataset folder it found;
hidden folders and ``__MACOSX`` skipped; one candidate per real path). :func:`find_dataset_root`
wants exactly one candidate (none or several: one :class:`DatasetError` naming every candidate,
or what the nearest folders lack); :func:`layout_problem` says the same without raising.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reid_utils.data.tracklets import DatasetError, dataset_root

MAX_DEPTH = 2  # root may be the dataset folder or up to this many levels above it
_SKIP = ("__MACOSX",)  # macOS zip residue: a copy of the tree holding ._* files
_MAX_NEAR = 4  # near misses named in a message


@dataclass(frozen=True)
class Layout:
    """How a dataset folder is recognised.

    Attributes:
        title: the dataset's name in messages (``"MARS"``).
        markers: folders a dataset folder must hold, e.g. ``("info", "bbox_test")``.
        expected: what a dataset folder holds, for messages.
        related: other folders of the layout (a training split), named in near-miss messages.
        check: ``check(folder) -> None | why`` on a folder holding every marker: None if it is
            a dataset folder, else why not (e.g. the frames are not Duke-named). Cheap.
    """

    title: str
    markers: tuple
    expected: str
    related: tuple = ()
    check: Callable[[Path], str | None] | None = None


@dataclass
class Search:
    """What :func:`search` found under ``root``.

    Attributes:
        root: the absolute root searched.
        candidates: dataset folders, shallowest first (then by name).
        near: ``(folder, why)`` of folders with some of the layout's folders that are not
            dataset folders (what they lack), shallowest first.
        deeper: dataset folders one level too deep (only looked for when there is no candidate).
    """

    root: Path
    candidates: list = field(default_factory=list)
    near: list = field(default_factory=list)
    deeper: list = field(default_factory=list)


def _subdirs(path: Path) -> list[Path]:
    """The visible sub-folders of ``path``, sorted by name (none if it cannot be listed)."""
    try:
        with os.scandir(path) as it:
            names = [e.name for e in it if e.is_dir() and not e.name.startswith(".") and e.name not in _SKIP]
    except OSError:
        return []
    return [path / n for n in sorted(names)]


def _classify(folder: Path, layout: Layout) -> tuple[bool, str | None]:
    """``(is_candidate, why_not)``; ``why_not`` is None for a folder unrelated to the layout."""
    present = [m for m in layout.markers if (folder / m).is_dir()]
    if len(present) == len(layout.markers):
        why = layout.check(folder) if layout.check is not None else None
        return why is None, why
    has = present + [r for r in layout.related if (folder / r).is_dir()]
    if not has:
        return False, None
    lacking = [m + "/" for m in layout.markers if m not in present]
    return False, f"holds {', '.join(h + '/' for h in has)} but lacks {', '.join(lacking)}"


def search(root: str | Path, layout: Layout) -> Search:
    """Dataset folders of ``layout`` at ``root`` or up to :data:`MAX_DEPTH` levels below it.

    A folder found is not searched further; folders reached twice (symbolic links) count once.
    When none is found, one more level is searched for :attr:`Search.deeper` (for the message).
    """
    root = Path(os.path.abspath(os.path.expanduser(str(root))))
    out, seen, level = Search(root), set(), [root]
    for depth in range(MAX_DEPTH + 1):
        searched = []
        for folder in level:
            ok, why = _classify(folder, layout)
            if ok:
                real = os.path.realpath(folder)
                if real not in seen:
                    seen.add(real)
                    out.candidates.append(folder)
                continue
            if why is not None:
                out.near.append((folder, why))
            searched.append(folder)
        # the level below MAX_DEPTH is listed only when nothing was found (for the message)
        level = [] if depth == MAX_DEPTH and out.candidates else [d for f in searched for d in _subdirs(f)]
    if not out.candidates:
        out.deeper = [f for f in level if _classify(f, layout)[0]]
    return out


def _none_found(s: Search, layout: Layout) -> str:
    """Why ``s`` found no dataset folder: what the root (and the nearest folders) lack."""
    root = s.root
    lacking = [m + "/" for m in layout.markers if not (root / m).is_dir()]
    own = f"lacks {', '.join(lacking)}" if lacking else next(why for f, why in s.near if f == root)
    msg = f"its data root {root} {own} (expected the {layout.title} layout)"
    below = [(f, why) for f, why in s.near if f != root][:_MAX_NEAR]
    if below:
        msg += "; below it, " + "; ".join(f"{f} {why}" for f, why in below)
    if s.deeper:
        names = ", ".join(str(f) for f in s.deeper[:_MAX_NEAR])
        msg += f"; {names} {'is' if len(s.deeper) == 1 else 'are'} {MAX_DEPTH + 1} levels below it, one too deep"
    above = next((p for p in list(root.parents)[:MAX_DEPTH] if _classify(p, layout)[0]), None)
    if above is not None:
        msg += f"; it is inside the {layout.title} folder {above}: give that folder"
    return msg


def _several_found(s: Search, layout: Layout) -> str:
    names = ", ".join(str(f) for f in s.candidates)
    return (
        f"its data root {s.root} holds {len(s.candidates)} {layout.title} folders ({names}); "
        f"expected one: give the one to use as the data root"
    )


def layout_problem(root, layout: Layout) -> str | None:
    """Why ``root`` does not lead to exactly one dataset folder of ``layout`` (None if it does).

    Reads folder listings only (and the few entries ``layout.check`` needs), never a data file.

    Returns:
        None, or e.g. ``"no data root is given"``, ``"its data root /d is not a directory"``,
        ``"its data root /d lacks info/, bbox_test/ (expected the MARS layout)"`` (plus what the
        folders below it lack), or ``"its data root /d holds 2 MARS folders (/d/a, /d/b); ..."``.
    """
    if root is None or str(root) == "":
        return "no data root is given"
    p = Path(os.path.abspath(os.path.expanduser(str(root))))
    if not p.is_dir():
        return f"its data root {p} is not a directory"
    s = search(p, layout)
    if len(s.candidates) == 1:
        return None
    return _several_found(s, layout) if s.candidates else _none_found(s, layout)


def find_dataset_root(root, layout: Layout, name: str) -> Path:
    """The one dataset folder of ``layout`` at ``root`` or up to two levels below it (absolute).

    Args:
        root: what the user gave (str or Path; ``~`` expanded).
        layout: the loader's :class:`Layout`.
        name: the dataset name of ``load_dataset(name, root)``, for messages.

    Raises:
        DatasetError: no root, not a directory, no dataset folder (what the root and the
            folders below it lack), or several (each one named).
    """
    root = dataset_root(root, name, layout.expected)
    s = search(root, layout)
    if len(s.candidates) == 1:
        return s.candidates[0]
    if s.candidates:
        raise DatasetError(f"load_dataset({name!r}): {_several_found(s, layout)}")
    raise DatasetError(
        f"load_dataset({name!r}): {_none_found(s, layout)}. Looked in {root} and the folders up to "
        f"{MAX_DEPTH} levels below it; expected a {layout.title} folder holding {layout.expected}: "
        f"give the dataset folder itself or a folder up to {MAX_DEPTH} levels above it"
    )
