"""Figure of the scoring-at-scale notebook (08): accuracy and time vs shortlist length K.

Plots the rows of :func:`reid_utils.experiments.scoring_at_scale.shortlist_sweep`: the learned
aggregator (Sec. 3.1, Eqs. 1-4) rescoring the top K of a mean-feature ranking
(Sec. 4.3), between the two ends K = 0 (mean feature only) and K = G (full
learned scoring). Saved through ``viz.save_fig`` by the caller.
"""

from __future__ import annotations

import pandas as pd

from reid_utils.viz.style import plt

__all__ = ["plot_shortlist"]


def plot_shortlist(df: pd.DataFrame, metrics=("mAP", "rank1"), title: str = ""):
    """Two panels vs K: accuracy (percent) and scoring wall time (s, log scale).

    Args:
        df: :func:`~reid_utils.experiments.scoring_at_scale.shortlist_sweep` rows (``mode``, ``K``,
            the metric columns in [0, 1], ``seconds``).
        metrics: accuracy columns to draw.
        title: figure title.

    Returns:
        The matplotlib Figure. The shortlist points are joined by lines; the two
        ends are drawn as horizontal reference lines (mean feature: dotted,
        full learned scoring: dashed) and as points at K = 0 and K = G.
    """
    need = {"mode", "K", "seconds", *metrics}
    if not need <= set(df.columns):
        raise ValueError(f"plot_shortlist: df needs columns {sorted(need)}, got {list(df.columns)}")
    sl = df[df["mode"] == "shortlist"].sort_values("K")
    full = df[df["mode"] == "full"].iloc[0]
    mean = df[df["mode"] == "mean-feature"].iloc[0]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, m in zip(colours, metrics):
        xs = [max(1, int(k)) for k in sl["K"]] + [int(full["K"])]
        a1.plot(xs, list(100 * sl[m]) + [100 * full[m]], "o-", color=c, label=f"{m}: shortlist (K = G: full)")
        a1.axhline(100 * full[m], color=c, ls="--", lw=1)
        a1.axhline(100 * mean[m], color=c, ls=":", lw=1, label=f"{m}: mean feature only")
    a1.set_xscale("log")
    a1.set_xlabel("shortlist length K (rescored per query)")
    a1.set_ylabel("percent")
    a1.legend(fontsize=8)
    xs = [max(1, int(k)) for k in sl["K"]] + [int(full["K"])]
    a2.plot(xs, list(sl["seconds"]) + [full["seconds"]], "o-", color=colours[0], label="shortlist (K = G: full)")
    a2.axhline(full["seconds"], color="k", ls="--", lw=1, label="full learned scoring")
    a2.axhline(mean["seconds"], color="k", ls=":", lw=1, label="mean feature only")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("shortlist length K (rescored per query)")
    a2.set_ylabel("scoring wall time (s)")
    a2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
