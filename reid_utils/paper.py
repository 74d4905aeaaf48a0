"""The paper's published numbers (Matiyali & Sharma, WACV 2020, Tables 2-5).

Read from the package data ``reid_utils/paper_tables/*.csv``: the values printed
in the paper, copied verbatim. The one reader of those files.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

DATASET_TITLES = {
    "mars": "MARS",
    "dukemtmc-videoreid": "DukeMTMC-VideoReID",
    "prid2011": "PRID2011",
    "synthetic": "synthetic benchmark",
}
PAPER_TABLE_FILES = {3: "table3_mars_sota.csv", 4: "table4_dukemtmc_videoreid_sota.csv", 5: "table5_prid2011_sota.csv"}
TABLE_DATASET = {3: "mars", 4: "dukemtmc-videoreid", 5: "prid2011"}
METRICS = ("mAP", "R1", "R5", "R20")


def read_paper_table(filename: str) -> pd.DataFrame:
    """One of the paper's tables shipped as package data (``reid_utils/paper_tables/<filename>``,
    values copied verbatim from the paper), as read from the CSV."""
    with resources.files("reid_utils").joinpath("paper_tables", filename).open() as f:
        return pd.read_csv(f)


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 (MARS), long form: method, t, metric, Mc_max, value (percent).

    Read from the package data file ``reid_utils/paper_tables/
    table2_mars_corruption.csv``: the values printed in the paper, copied
    verbatim (``t`` is NaN for the learned method).
    """
    df = read_paper_table("table2_mars_corruption.csv")
    df["t"] = pd.to_numeric(df["t_percent"].replace("n/a", np.nan))
    return df.drop(columns="t_percent")[["method", "t", "metric", "Mc_max", "value"]]


def paper_results() -> pd.DataFrame:
    """The paper's Table 2 in the layout of our results: method, t, Mc_max, mAP, rank1 (percent)."""
    p = paper_table2()
    wide = (
        p.pivot_table(index=["method", "t", "Mc_max"], columns="metric", values="value", dropna=False)
        .dropna(how="all")
        .reset_index()
    )
    wide.columns.name = None
    return wide


def paper_table(table: int) -> pd.DataFrame:
    """The paper's Table 3 (MARS), 4 (DukeMTMC-VideoReID) or 5 (PRID2011), in percent.

    Read from the package data (verbatim copies of the published values; a
    ``-`` in the paper is NaN). Columns: ``source`` (``"paper (MARS)"``, ...),
    ``model``, ``protocol`` (``"as published"``), the table's metrics (a
    subset of :data:`METRICS`), ``reranking`` (bool; Table 3 marks it, Tables
    4-5 list no re-ranked row) and, for Table 3, ``backbone_3d`` (bool, the
    paper's asterisk).
    """
    if table not in PAPER_TABLE_FILES:
        raise ValueError(f"table: expected one of {sorted(PAPER_TABLE_FILES)} (the paper's Tables 3-5), got {table!r}")
    df = read_paper_table(PAPER_TABLE_FILES[table])
    for col in ("backbone_3d", "reranking"):
        if col in df.columns:
            df[col] = df[col].map({"yes": True, "no": False}).astype(bool)
    if "reranking" not in df.columns:
        df["reranking"] = df["model"].str.contains("Reranking", case=False)
    df.insert(0, "source", f"paper ({DATASET_TITLES[TABLE_DATASET[table]]})")
    df.insert(2, "protocol", "as published")
    return df


def paper_metrics(table: int | pd.DataFrame) -> list[str]:
    """The metric columns of a paper table, in :data:`METRICS` order."""
    df = paper_table(table) if isinstance(table, int) else table
    return [m for m in METRICS if m in df.columns]
