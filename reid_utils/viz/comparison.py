"""The figure of notebook 07: our rows with and without re-ranking, and what re-ranking adds (Sec. 4.5, Table 3).

Absolute numbers of ours and of the paper are drawn in *separate* panels
(they are measured on different data unless the paper profile ran on the
paper's dataset); the last panel compares the one thing that can be set side
by side across datasets: the gain from k-reciprocal re-ranking, in points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reid_utils.paper import METRICS
from reid_utils.viz.style import plt

__all__ = ["plot_comparison"]

_MODEL_COLOURS = {
    "Ours (learned aggregation)": "#1f77b4",
    "Ours + Reranking": "#6baed6",
    "Mean clip feature": "#7f7f7f",
    "Mean clip feature + Reranking": "#c7c7c7",
}


def _bars(ax, labels, values, errors, metrics, colours, hatches=None):
    n = len(labels)
    width = 0.8 / max(n, 1)
    x = np.arange(len(metrics))
    for i, lab in enumerate(labels):
        ax.bar(
            x + (i - (n - 1) / 2) * width,
            values[i],
            width,
            yerr=errors[i],
            capsize=2,
            label=lab,
            color=colours[i],
            hatch=None if hatches is None else hatches[i],
            edgecolor="white",
        )
    ax.set_xticks(x, metrics)


def plot_comparison(ours: pd.DataFrame, gains: pd.DataFrame | None = None, protocol_names: dict | None = None):
    """Our rows per evaluation convention, plus the re-ranking gains of ours and the paper's.

    Args:
        ours: None (nothing measured: only the gain panel) or our rows
            (``reid_utils.experiments.comparison_rows.our_results`` or ``summarize_split_results``):
            ``source``, ``model``, ``protocol``, ``reranking`` and metric columns in percent (optional
            ``"<metric> std"`` drawn as error bars).
        gains: ``reid_utils.experiments.comparison.reranking_gains`` rows (paper pairs and ours);
            None: no gain panel. At least one of ``ours`` and ``gains``.
        protocol_names: readable names of the conventions for the titles.

    Returns:
        matplotlib Figure.
    """
    have_gains = gains is not None and len(gains) > 0
    if (ours is None or not len(ours)) and not have_gains:
        raise ValueError("ours, gains: expected our rows or re-ranking gains to plot")
    if ours is None or not len(ours):  # nothing measured: the paper's re-ranking pairs only
        ours = pd.DataFrame(columns=["source", "model", "protocol", "reranking"])
    metrics = [
        m
        for m in METRICS
        if (m in ours.columns and ours[m].notna().any()) or (not len(ours) and have_gains and m in gains.columns)
    ]
    protocols = list(dict.fromkeys(ours["protocol"]))
    names = protocol_names or {}
    n = len(protocols) + have_gains
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    source = " / ".join(dict.fromkeys(ours["source"]))
    for ax, prot in zip(axes[0], protocols):
        sub = ours[ours["protocol"] == prot]
        labels = list(sub["model"])
        vals = [sub[metrics].iloc[i].to_numpy(float) for i in range(len(sub))]
        errs = [
            sub[[f"{m} std" for m in metrics]].iloc[i].to_numpy(float)
            if all(f"{m} std" in sub.columns for m in metrics)
            else None
            for i in range(len(sub))
        ]
        cols = [_MODEL_COLOURS.get(lab, f"C{i}") for i, lab in enumerate(labels)]
        _bars(ax, labels, vals, errs, metrics, cols)
        ax.set_ylim(0, 100)
        ax.set_ylabel("%")
        ax.set_title(f"{source}\nevaluation: {names.get(prot, prot)}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    if n > len(protocols):
        ax = axes[0, -1]
        g = gains
        gm = [m for m in metrics if m in g.columns]
        labels = [
            f"{r.source}: {r.model}" + ("" if r.protocol == "as published" else f" [{r.protocol}]")
            for r in g.itertuples()
        ]
        vals = [g[gm].iloc[i].to_numpy(float) for i in range(len(g))]
        paper = [s.startswith("paper") for s in g["source"]]
        cols = [f"C{3 + i}" if p else _MODEL_COLOURS.get(m, f"C{i}") for i, (p, m) in enumerate(zip(paper, g["model"]))]
        hatches = ["//" if p else (".." if prot == "mars_official" else None) for p, prot in zip(paper, g["protocol"])]
        _bars(ax, labels, vals, [None] * len(g), gm, cols, hatches=hatches)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("re-ranked minus plain (points)")
        ax.set_title(
            "what k-reciprocal re-ranking adds\n(hatched //: the paper's published pairs; "
            "dotted: official MARS convention)",
            fontsize=9,
        )
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, frameon=False)
    fig.tight_layout()
    return fig
