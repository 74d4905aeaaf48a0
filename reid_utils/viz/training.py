"""Training curves: the I3D (Sec. 3.2, Eqs. 7-8; notebook 01) and the aggregators (notebook 04).

Each function takes ``{label: history DataFrame}`` as the training functions of
``reid_utils.training`` record them and draws one line per run.
"""

from __future__ import annotations

from reid_utils.viz.style import plt

__all__ = ["plot_agg_training", "plot_training_curves"]


def plot_training_curves(histories: dict, smooth: int = 10):
    """Loss terms and periodic test mAP of I3D training runs.

    Args:
        histories: ``{label: DataFrame}`` with ``iteration, loss, triplet, softmax``
            and ``mAP`` (NaN where not evaluated), the training history of
            ``reid_utils.training.i3d.train_i3d``; with a ``phase`` column
            (``reid_utils.training.i3d.trained_i3d``'s shared trunk then
            per-L_train phase) the end of the trunk is marked by a dotted line.
        smooth: moving-average window for the losses.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    ends = {
        float(h.loc[h["phase"] == "trunk", "iteration"].max())
        for h in histories.values()
        if "phase" in h and (h["phase"] == "trunk").any()
    }
    for x in ends:
        for ax in axes:
            ax.axvline(x, color="0.5", ls=":", lw=1)
        axes[0].annotate(
            " end of shared trunk", (x, 0.97), xycoords=("data", "axes fraction"), fontsize=7, color="0.4", va="top"
        )
    for label, h in histories.items():
        for ax, col in zip(axes[:2], ("triplet", "softmax")):
            ax.plot(h["iteration"], h[col].rolling(smooth, min_periods=1).mean(), label=label)
        ev = h.dropna(subset=["mAP"])
        axes[2].plot(ev["iteration"], 100 * ev["mAP"], "o-", label=label)
    axes[0].set(title="Batch-hard triplet loss (Eq. 7)", xlabel="iteration")
    axes[1].set(title="Softmax cross-entropy (Eq. 8)", xlabel="iteration")
    axes[2].set(title="Test mAP, one evenly-sampled clip", xlabel="iteration", ylabel="mAP (%)")
    for ax in axes:
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_agg_training(histories: dict, smooth: int = 20):
    """Training curves of aggregators: batch-hard loss, mined similarities, active anchors.

    Args:
        histories: ``{label: DataFrame}`` training histories of
            ``reid_utils.training.aggregator.train_aggregator`` (``iteration``, ``loss``, ``hard_pos_sim``,
            ``hard_neg_sim``, ``active``).
        smooth: window of the centred rolling mean drawn over the raw curve.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    cmap = plt.get_cmap("tab10")
    for k, (label, h) in enumerate(histories.items()):
        c = cmap(k % 10)
        it = h["iteration"]
        roll = lambda s: s.rolling(smooth, center=True, min_periods=1).mean()  # noqa: E731
        axes[0].plot(it, h["loss"], color=c, alpha=0.2, lw=0.8)
        axes[0].plot(it, roll(h["loss"]), color=c, lw=2, label=label)
        axes[1].plot(it, roll(h["hard_pos_sim"]), color=c, lw=2, label=f"{label}: hardest positive")
        axes[1].plot(it, roll(h["hard_neg_sim"]), color=c, lw=2, ls="--")
        axes[2].plot(it, roll(h["active"]), color=c, lw=2, label=label)
    axes[0].set(xlabel="iteration", ylabel="batch-hard triplet loss", title=f"Loss (line: rolling mean of {smooth})")
    axes[1].set(
        xlabel="iteration", ylabel="similarity", title="Mined pairs: hardest positive (solid), negative (dashed)"
    )
    axes[2].set(xlabel="iteration", ylabel="fraction", ylim=(-0.02, 1.02), title="Anchors with a positive hinge")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
