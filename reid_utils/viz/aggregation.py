"""Figures of the clip similarity aggregation (Sec. 3.1, Eqs. 1-4) and the corruption sweep (Sec. 4.4).

Notebook 04: accuracy per aggregation method, importance maps (alpha) next to
clip-pair cosines, alpha vs cosine. Notebook 05: corrupted clips (Fig. 5),
metric vs t per M_c^max (Fig. 6) and the degradation with M_c^max, the methods
coloured by :data:`AGG_METHOD_COLORS`.
"""

from __future__ import annotations

import numpy as np

from reid_utils.viz.data import tracklet_strip
from reid_utils.viz.style import plt

__all__ = [
    "AGG_METHOD_COLORS",
    "plot_alpha_vs_cosine",
    "plot_corruption_examples",
    "plot_degradation",
    "plot_fig6",
    "plot_importance_heatmaps",
    "plot_method_bars",
]


AGG_METHOD_COLORS = {"mean": "#7f7f7f", "topt-e": "#0072b2", "topt-te": "#e69f00", "learned": "#d55e00"}


def plot_method_bars(results, title: str = "Sequence similarity from M clips"):
    """mAP and rank-1 bars per method.

    Args:
        results: DataFrame indexed by method label with ``mAP`` and ``rank1``
            columns, in percent; ``<metric>_lo`` / ``_hi`` columns (a 95 % interval)
            are drawn as error bars when present.
    """
    names = list(results.index)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 3.8))
    for k, metric in enumerate(["mAP", "rank1"]):
        v = results[metric].to_numpy()
        err = None
        if f"{metric}_lo" in results and f"{metric}_hi" in results:
            err = np.vstack([v - results[f"{metric}_lo"].to_numpy(), results[f"{metric}_hi"].to_numpy() - v])
        bars = ax.bar(x + (k - 0.5) * 0.38, v, width=0.38, label=metric, yerr=err, capsize=2, ecolor="0.35")
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set(xticks=x, ylabel="%", title=title)
    ax.set_xticklabels(names, rotation=20, ha="right")
    top = [c for c in ("mAP", "rank1", "mAP_hi", "rank1_hi") if c in results]
    ax.set_ylim(0, min(100, 1.15 * float(results[top].to_numpy().max()) + 5))
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_importance_heatmaps(panels):
    """Importance scores and clip-pair cosines of sequence pairs as M x M maps.

    Args:
        panels: list of ``(title, alpha (Mq, Mg), cos (Mq, Mg))``: one row per
            sequence pair; alpha is shown normalised to mean 1 (alpha / mean).
    """
    n = len(panels)
    fig, axes = plt.subplots(n, 2, figsize=(10, 3.9 * n), squeeze=False)
    for r, (title, alpha, cos) in enumerate(panels):
        alpha = np.asarray(alpha, dtype=float)
        a = alpha / alpha.mean()
        for c, (mat, name, cm) in enumerate(
            [(a, "importance alpha / mean", "magma"), (np.asarray(cos, float), "clip-pair cosine", "viridis")]
        ):
            ax = axes[r, c]
            im = ax.imshow(mat, cmap=cm)
            ax.set(xlabel="gallery clip j", ylabel="query clip i")
            ax.set_title(f"{title}\n{name}", fontsize=10)
            ax.set_xticks(range(mat.shape[1]))
            ax.set_yticks(range(mat.shape[0]))
            ax.grid(False)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_alpha_vs_cosine(df, max_points: int = 4000, seed: int = 0):
    """Importance scores: distribution, relation to the clip-pair cosine, and to the step t.

    Args:
        df: one row per clip pair with ``alpha_rel`` (alpha / mean alpha of its
            sequence pair), ``cos``, ``same`` (bool: same identity) and the
            clip indices ``i``, ``j`` (visiting step t = i * M + j).
    """
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    bins = np.linspace(0, float(np.quantile(df["alpha_rel"], 0.995)) + 1e-9, 40)
    M = int(df["j"].max()) + 1
    step = df["i"] * M + df["j"]
    for same, name, col in [(True, "same identity", "#009e73"), (False, "different identities", "#cc79a7")]:
        sub = df[df["same"] == same]
        if not len(sub):
            continue
        axes[0].hist(sub["alpha_rel"], bins=bins, density=True, histtype="step", lw=2, color=col, label=name)
        pts = sub.sample(min(len(sub), max_points // 2), random_state=seed)
        axes[1].scatter(pts["cos"], pts["alpha_rel"].clip(lower=1e-4), s=4, alpha=0.3, color=col, label=name)
        per_t = sub.groupby(step[sub.index])["alpha_rel"].mean()
        axes[2].plot(per_t.index, per_t.to_numpy(), "-", color=col, lw=1.5, label=name)
    axes[0].axvline(1.0, color="0.4", ls=":", lw=1)
    axes[0].set(
        xlabel="alpha / mean alpha of the sequence pair",
        ylabel="density",
        title="Importance scores (1 = uniform weighting)",
    )
    axes[0].legend(frameon=False)
    axes[1].set(
        xlabel="clip-pair cosine",
        ylabel="alpha / mean alpha (log)",
        yscale="log",
        title="Importance vs clip-pair cosine",
    )
    axes[1].legend(frameon=False, markerscale=3)
    axes[2].axhline(1.0, color="0.4", ls=":", lw=1)
    axes[2].set(
        xlabel="visiting step t = i M + j",
        ylabel="mean alpha / mean alpha (log)",
        yscale="log",
        title="Importance vs position in the recurrence",
    )
    for k in range(M, M * M, M):
        axes[2].axvline(k - 0.5, color="0.85", lw=0.8, zorder=0)
    axes[2].legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_corruption_examples(examples, titles=None, height: int = 96):
    """Clean vs corrupted clips (the paper's Fig. 5).

    Args:
        examples: list of ``(clean, corrupted)``, each a (L, H, W, 3) uint8 clip.
        titles: optional label per example.
        height: frame height in pixels inside the figure (nearest neighbour,
            so the blocks of the corruption stay visible).
    """
    n = len(examples)
    if n == 0:
        raise ValueError("examples: expected at least one (clean, corrupted) pair")
    fig, axes = plt.subplots(n, 2, figsize=(9, 1.0 + 0.024 * height * n), squeeze=False)
    for r, (clean, bad) in enumerate(examples):
        for c, (clip, name) in enumerate([(clean, "clean clip"), (bad, "corrupted clip")]):
            ax = axes[r, c]
            ax.imshow(tracklet_strip(list(np.asarray(clip)), height, 0, None))
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            label = name if titles is None else f"{titles[r]}: {name}"
            ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def _level_colors(levels):
    cmap = plt.get_cmap("viridis")
    levels = sorted(levels)
    return {lv: cmap(k / max(1, len(levels) - 1)) for k, lv in enumerate(levels)}


def plot_fig6(results, metric: str = "mAP", title: str = ""):
    """The paper's Fig. 6: metric vs t per M_c^max, top-t%-eval and top-t%-train-eval.

    Each panel draws one curve per corruption level; the learned method is a
    horizontal dashed line of the same colour per level.

    Args:
        results: long DataFrame (``method``, ``t``, ``Mc_max`` and ``metric``
            in percent); ours or the paper's, same format.
        metric: ``"mAP"`` or ``"rank1"``.
        title: prefix of the panel titles (e.g. which data).
    """
    levels = sorted(results["Mc_max"].unique())
    colors = _level_colors(levels)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, method, name in [(axes[0], "topt-e", "top-t%-eval"), (axes[1], "topt-te", "top-t%-train-eval")]:
        for lv in levels:
            sub = results[(results["method"] == method) & (results["Mc_max"] == lv)].sort_values("t")
            if len(sub):
                ax.plot(sub["t"], sub[metric], "-o", ms=4, color=colors[lv], label=f"$M_c^{{max}}$={lv}")
            lr = results[(results["method"] == "learned") & (results["Mc_max"] == lv)]
            if len(lr):
                ax.axhline(float(lr[metric].iloc[0]), color=colors[lv], ls="--", lw=1.2)
        ax.set(xlabel="t (% of clip pairs kept)", title=f"{title}{name}  (dashed: learned)")
        ax.set_xticks(sorted(results.loc[results["method"] == "topt-e", "t"].dropna().unique()))
    axes[0].set_ylabel(f"{metric} (%)")
    axes[1].legend(frameon=False, fontsize=8, ncol=2, loc="best")
    fig.tight_layout()
    return fig


def plot_degradation(panels: dict, metric: str = "mAP"):
    """Metric vs M_c^max: learned, the best top-t% of each variant (oracle t), mean.

    Args:
        panels: ``{title: long DataFrame}`` (``method``, ``t``, ``Mc_max``,
            ``metric`` in percent), e.g. ours and the paper's side by side.
        metric: ``"mAP"`` or ``"rank1"``.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 3.9), squeeze=False)
    for ax, (title, df) in zip(axes[0], panels.items()):
        for method, name in [
            ("learned", "learned"),
            ("topt-e", "best top-t%-eval"),
            ("topt-te", "best top-t%-train-eval"),
            ("mean", "mean feature"),
        ]:
            sub = df[df["method"] == method]
            if not len(sub):
                continue
            best = sub.groupby("Mc_max")[metric].max()
            ax.plot(
                best.index,
                best.to_numpy(),
                "-o",
                ms=4,
                color=AGG_METHOD_COLORS[method],
                label=name,
                lw=2.5 if method == "learned" else 1.5,
            )
        ax.set(xlabel="$M_c^{max}$ (max. corrupted clips per sequence)", ylabel=f"{metric} (%)", title=title)
        ax.set_xticks(sorted(df["Mc_max"].unique()))
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_seed_table2(table, metric: str = "mAP", title: str = ""):
    """Table 2's main rows over training seeds: mean +/- sd against M_c^max.

    Args:
        table: ``reid_utils.experiments.sweep_tables.table2_seeds`` (rows by name, columns
            ``mean`` / ``sd`` / ``n`` x M_c^max), in percent.
        metric: axis label.
    """
    styles = {"learned": ("learned", 2.5), "mean": ("mean", 1.5)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for row in table.index:
        key, lw = styles.get(row, ("topt-e" if row.startswith("topt-e ") else "topt-te", 1.5))
        mean, sd = table.loc[row, "mean"], table.loc[row, "sd"].fillna(0.0)
        dashed = "(test)" in row  # the oracle choice of t, as in the paper
        ax.errorbar(
            mean.index,
            mean.to_numpy(),
            yerr=sd.to_numpy(),
            fmt="--o" if dashed else "-o",
            ms=4,
            capsize=3,
            color=AGG_METHOD_COLORS[key],
            lw=lw,
            alpha=0.6 if dashed else 1.0,
            label=row,
        )
    n = int(table["n"].to_numpy().max())
    ax.set(
        xlabel="$M_c^{max}$ (max. corrupted clips per sequence)",
        ylabel=f"{metric} (%), mean $\\pm$ sd",
        title=f"{title}{n} training seeds",
    )
    ax.set_xticks(list(table["mean"].columns))
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
