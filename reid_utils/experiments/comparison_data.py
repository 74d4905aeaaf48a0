"""Which of the paper's datasets a run can measure for the comparison (Sec. 4.5, Tables 3-5).

The paper compares with published methods on MARS (Table 3), DukeMTMC-VideoReID
(Table 4) and PRID2011 (Table 5). A run measures the one dataset its config
names (``$REID_DATASET``, read from ``$REID_DATA_ROOT``; the synthetic
benchmark, MARS layout, needs no root): :func:`data_availability` says which
one, where, and what is missing; our rows then go beside that dataset's table
(:data:`DATASET_TABLE`; the synthetic benchmark beside Table 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from reid_utils.data.datasets import canonical_name, layout_problem

__all__ = [
    "PAPER_DATASETS",
    "DATASET_TABLE",
    "MARS_LAYOUT",
    "DataAvailability",
    "data_availability",
    "default_protocols",
]

PAPER_DATASETS = ("mars", "dukemtmc-videoreid", "prid2011")
#: the paper table our rows of a dataset go beside
DATASET_TABLE = {"mars": 3, "synthetic": 3, "dukemtmc-videoreid": 4, "prid2011": 5}
#: datasets with the MARS layout and its two evaluation conventions
MARS_LAYOUT = ("mars", "synthetic")


@dataclass(frozen=True)
class DataAvailability:
    """Which of the paper's datasets a config provides.

    Attributes:
        dataset: the config's dataset (canonical name).
        root: its data root (None: not set; the synthetic benchmark is then generated).
        available: the dataset can be measured in this run.
        table: the paper table our rows go beside (None when nothing is measured).
        had: the datasets this run measures (at most one; ``()`` if none).
        missing: the paper's datasets this run does not measure.
        problem: why the configured dataset is unavailable (None if it is available).
    """

    dataset: str
    root: str | None
    available: bool
    table: int | None
    had: tuple
    missing: tuple
    problem: str | None


def data_availability(cfg, check_disk: bool = True) -> DataAvailability:
    """Detect which dataset ``cfg`` provides: what this run has and what it does not.

    A run measures the one dataset ``cfg.dataset`` names (``$REID_DATASET``),
    read from ``cfg.data_root`` (``$REID_DATA_ROOT``); the synthetic benchmark
    needs no root (it is generated from the profile's seed).

    Args:
        cfg: ``Config``.
        check_disk: also check that the root exists with the dataset's
            top-level folders (MARS ``info/``, ``bbox_test/``; Duke ``query/``,
            ``gallery/``; PRID ``multi_shot/``). The loaders check the rest.

    Returns:
        :class:`DataAvailability`.

    Raises:
        ValueError: ``cfg.dataset`` is not a known dataset.
    """
    name = canonical_name(cfg.dataset)
    root = cfg.data_root or None
    if name != "synthetic" and root is None:
        problem = "no data root is set (cfg.data_root / $REID_DATA_ROOT)"
    elif root is not None and check_disk:
        problem = layout_problem(name, root)
    else:
        problem = None
    available = problem is None
    had = (name,) if available else ()
    return DataAvailability(
        dataset=name,
        root=root,
        available=available,
        table=DATASET_TABLE[name] if available else None,
        had=had,
        missing=tuple(d for d in PAPER_DATASETS if d not in had),
        problem=problem,
    )


def default_protocols(dataset: str) -> tuple:
    """Both MARS conventions (``torchreid``, ``mars_official``) for MARS-layout data, ``torchreid`` for
    DukeMTMC-VideoReID and PRID2011."""
    return ("torchreid", "mars_official") if canonical_name(dataset) in MARS_LAYOUT else ("torchreid",)
