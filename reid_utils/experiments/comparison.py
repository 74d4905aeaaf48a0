"""The paper's Tables 3-5 with our rows beside them, and what k-reciprocal re-ranking adds (Sec. 4.5).

Paper Sec. 4.5 compares the learned clip similarity aggregation with published
methods on MARS (Table 3: mAP, R1, R5, R20; "Ours" 75.9 / 82.7, "Ours +
Reranking" 83.3 / 83.4), DukeMTMC-VideoReID (Table 4) and PRID2011 (Table 5:
R1, R5, R20; 10 random splits). :func:`comparison_table` puts the paper's rows
(``reid_utils.paper.paper_table``) and ours
(``reid_utils.experiments.comparison_rows``) in one table;
:func:`reranking_gains` takes re-ranked minus plain rows, for the paper's pairs
and ours, and :func:`reranking_agreement` compares the direction of our gain
with the paper's. Every metric is in percent (the paper's unit).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reid_utils.data.datasets import canonical_name
from reid_utils.experiments.comparison_data import DATASET_TABLE, DataAvailability
from reid_utils.experiments.comparison_rows import OUR_MODELS
from reid_utils.paper import DATASET_TITLES, METRICS, PAPER_TABLE_FILES, TABLE_DATASET, paper_metrics, paper_table

__all__ = [
    "PROTOCOL_NAMES",
    "comparison_table",
    "comparison_tables",
    "ours_table",
    "reranking_gains",
    "reranking_agreement",
]

#: readable names of the evaluation conventions (``"as published"``: the paper's rows)
PROTOCOL_NAMES = {
    "torchreid": "torchreid (gallery = the non-query test tracks)",
    "mars_official": "official MARS (gallery = all test tracks)",
    "as published": "as published",
}


def comparison_table(table: int, ours: pd.DataFrame | None = None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """One of the paper's Tables 3-5 with our rows appended, columns aligned.

    Args:
        table: 3, 4 or 5.
        ours: our rows (``comparison_rows.our_results`` / ``summarize_split_results``)
            measured on the dataset of that table (MARS-layout data, i.e. MARS
            or the synthetic benchmark, for Table 3); None: the paper's rows only.
        paper: the paper's rows (default ``reid_utils.paper.paper_table``: the
            published values; the paper does not say which MARS evaluation
            convention they use, so their ``protocol`` reads ``"as published"``).

    Returns:
        DataFrame: ``source``, ``model``, ``protocol``, the paper's metrics
        (percent), ``"<metric> std"`` when our rows have them (NaN for the
        paper), ``reranking`` and (Table 3) ``backbone_3d`` (True for ours:
        I3D). Paper rows first, in the paper's order.

    Raises:
        ValueError: our rows come from another table's dataset, or lack a
            metric column of the paper's table.
    """
    paper = paper_table(table) if paper is None else paper
    metrics = paper_metrics(paper)
    flags = [c for c in ("reranking", "backbone_3d") if c in paper.columns]
    cols = ["source", "model", "protocol"] + metrics
    if ours is None or not len(ours):
        return paper[cols + flags].reset_index(drop=True)
    lacking = [c for c in ["source", "model", "protocol", "reranking"] + metrics if c not in ours.columns]
    if lacking:
        raise ValueError(f"ours: missing columns {lacking} (Table {table} reports {metrics})")
    if "dataset" in ours.columns:
        wrong = sorted({d for d in ours["dataset"] if DATASET_TABLE.get(canonical_name(d)) != table})
        if wrong:
            raise ValueError(
                f"ours: rows measured on {', '.join(wrong)} do not belong beside Table {table} "
                f"({DATASET_TITLES[TABLE_DATASET[table]]})"
            )
    std = [f"{m} std" for m in metrics if f"{m} std" in ours.columns]
    o = ours.copy()
    if "backbone_3d" in flags:
        o["backbone_3d"] = True  # our backbone is the I3D (3D CNN), like the paper's
    out = pd.concat([paper.assign(**{c: np.nan for c in std}), o], ignore_index=True)
    return out[cols + std + flags]


def comparison_tables(ours: pd.DataFrame | None, availability: DataAvailability) -> dict:
    """``{3: df, 4: df, 5: df}``: each paper table, with our rows beside the one we measured."""
    return {t: comparison_table(t, ours if availability.table == t else None) for t in PAPER_TABLE_FILES}


def ours_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Our rows alone for saving (``07_ours``): no CMC arrays, metrics in percent."""
    return ours.drop(columns=[c for c in ("cmc", "method") if c in ours.columns]).reset_index(drop=True)


def reranking_gains(ours: pd.DataFrame | None = None, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """What re-ranking adds, in points: the paper's pairs and ours.

    Paper pairs are rows ``"X + Reranking (...)"`` whose base ``"X (...)"`` is
    also in the table (Table 3: PABR, STA, Ours). Ours: each method and
    protocol, re-ranked minus not re-ranked.

    Returns:
        DataFrame: ``source``, ``model`` (the base row), ``protocol`` and the
        metric differences (percentage points) of the columns present.
    """
    rows = []
    if paper is not None:
        names = set(paper["model"])
        metrics = paper_metrics(paper)
        for _, r in paper.iterrows():
            if " + Reranking" not in r["model"]:
                continue
            base = r["model"].replace(" + Reranking", "")
            if base in names:
                b = paper[paper["model"] == base].iloc[0]
                rows.append(
                    {
                        "source": r["source"],
                        "model": base,
                        "protocol": r["protocol"],
                        **{m: r[m] - b[m] for m in metrics},
                    }
                )
    if ours is not None and len(ours):
        metrics = [m for m in METRICS if m in ours.columns]
        key = "method" if "method" in ours.columns else "model"
        for (src, meth, prot), grp in ours.groupby(["source", key, "protocol"], sort=False):
            on, off = grp[grp["reranking"]], grp[~grp["reranking"]]
            if len(on) != 1 or len(off) != 1:
                raise ValueError(
                    f"ours: expected one row with and one without re-ranking for {meth!r}, "
                    f"{prot!r}; got {len(on)} and {len(off)}"
                )
            rows.append(
                {
                    "source": src,
                    "model": off["model"].iloc[0],
                    "protocol": prot,
                    **{m: on[m].iloc[0] - off[m].iloc[0] for m in metrics},
                }
            )
    return pd.DataFrame(rows)


def reranking_agreement(gains: pd.DataFrame, metrics=("mAP", "R1"), tol: float = 0.05) -> pd.DataFrame:
    """Does re-ranking change our learned aggregation in the direction it changes the paper's method?

    Compares, per metric and evaluation convention, our gain
    (``"Ours (learned aggregation)"``) with the paper's own (``"Ours (paper)"``,
    Table 3, MARS).

    Args:
        gains: :func:`reranking_gains` rows (paper pairs and ours).
        metrics: the metrics compared (those present in ``gains``).
        tol: a change smaller than this (points) counts as no change (below
            the tables' rounding).

    Returns:
        DataFrame, one row per (metric, protocol): ``metric``, ``protocol``,
        ``paper`` and ``ours`` (gains in percentage points) and ``verdict``
        (``"agrees"``, ``"disagrees"`` or ``"no change"``); empty when
        ``gains`` lacks either side.
    """
    cols = ["metric", "protocol", "paper", "ours", "verdict"]
    if gains is None or not len(gains):
        return pd.DataFrame(columns=cols)
    paper = gains[gains["source"].str.startswith("paper") & (gains["model"] == "Ours (paper)")]
    ours = gains[gains["source"].str.startswith("ours") & (gains["model"] == OUR_MODELS[("learned", False)])]
    rows = []
    if len(paper) and len(ours):
        p = paper.iloc[0]
        for m in [m for m in metrics if m in gains.columns]:
            for prot, v in zip(ours["protocol"], ours[m]):
                if abs(v) < tol:
                    verdict = "no change"
                else:
                    verdict = "agrees" if np.sign(v) == np.sign(p[m]) else "disagrees"
                rows.append({"metric": m, "protocol": prot, "paper": p[m], "ours": v, "verdict": verdict})
    return pd.DataFrame(rows, columns=cols)
