"""The Sec. 4.3 ablations of the I3D features: Fig. 3 (frame sampling, Table 1) and Fig. 4 (clip averaging).

Notebooks 02 and 03 draw the tables of ``reid_utils.experiments.i3d_ablations``
with these, ours and (through ``paper_label``) next to the paper's.
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker

from reid_utils.viz.style import plt

__all__ = ["plot_clip_averaging", "plot_sampling_ablation"]


def plot_sampling_ablation(df, metric: str = "mAP", paper_label: str | None = None):
    """Fig. 3: one panel per L_train; metric vs L_test, one line per sampling method.

    Args:
        df: ``reid_utils.experiments.i3d_ablations.sampling_ablation`` output (metrics in %).
        metric: ``"mAP"`` or ``"rank1"``.
    """
    Ls = sorted(df.L_train.unique())
    fig, axes = plt.subplots(1, len(Ls), figsize=(4.2 * len(Ls), 3.5), sharey=True, squeeze=False)
    styles = {"consec": "o-", "random": "s-", "evenly": "^-", "all": "k--"}
    for ax, L in zip(axes[0], Ls):
        sub = df[df.L_train == L]
        for method, g in sub.groupby("method", sort=False):
            g = g.sort_values("L_test")
            ax.plot(g.L_test, g[metric], styles.get(method, "-"), label=method)
        ax.set(xscale="log", xlabel="$L_{test}$ (frames)", title=f"$L_{{train}}$ = {L}")
        ax.set_xticks(sorted(df.L_test.unique()))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0, 0].set_ylabel(f"{metric} (%)")
    axes[0, -1].legend(frameon=False)
    if paper_label:
        fig.suptitle(paper_label, y=1.02)
    fig.tight_layout()
    return fig


def plot_clip_averaging(df, paper_label: str | None = None):
    """Fig. 4: mAP and rank-1 vs number of averaged clips, with/without L2."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("mAP", "rank1")):
        for l2, g in df.groupby("l2_normalised"):
            g = g.sort_values("num_clips")
            ax.plot(g.num_clips, g[metric], "o-", label="with L2 norm." if l2 else "without L2 norm.")
        ax.set(xscale="log", xlabel="number of averaged clips", ylabel=f"{metric} (%)", title=metric)
        ax.set_xticks(sorted(df.num_clips.unique()))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(frameon=False)
    if paper_label:
        fig.suptitle(paper_label, y=1.02)
    fig.tight_layout()
    return fig
