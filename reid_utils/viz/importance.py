"""Figures of notebook 06: the paper's Fig. 7 and the importance-vs-nuisance measurement.

* :func:`plot_fig7` - like the paper's Fig. 7 (Sec. 4.6, "Qualitative
  results"): for chosen query/gallery sequence pairs (one per column, headed
  by the sequence similarity of Eq. 4), the two highest- and two
  lowest-importance clip pairs (query clip left, green frame; gallery clip
  right, orange frame; alpha relative to the pair's mean and the clip-pair
  cosine above), and the M x M importance map (alpha / mean, Eq. 1) with those
  clip pairs outlined. Annotated nuisances are marked on each frame by a small
  square in the colour of ``viz.NUISANCE_COLORS`` (plus
  :data:`CORRUPTED_COLOR` for clips taken from the corrupted bank).
* :func:`plot_pair_importance` - one such column for one sequence pair (the
  explorer of ``reid_utils.viz.widgets`` renders it).
* :func:`plot_importance_auc` - the measurement of ``reid_utils.experiments.importance_vs_nuisance``:
  ROC AUC of low importance per nuisance, learned vs the top-t% selection,
  with cluster-bootstrap intervals and a dashed line at 0.5 (chance).

Every plotting function takes an optional ``fig``: by default a pyplot figure
(shown inline, saved with ``viz.save_fig``); the explorer passes a bare
``matplotlib.figure.Figure`` so that no pyplot state is touched inside widget
callbacks. :func:`figure_png` renders any figure to PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

from reid_utils.viz.data import NUISANCE_COLORS, frame_nuisances, tracklet_strip

__all__ = [
    "CORRUPTED_COLOR",
    "QUERY_COLOR",
    "GALLERY_COLOR",
    "ClipSource",
    "clip_pair_image",
    "plot_pair_importance",
    "plot_fig7",
    "plot_importance_auc",
    "figure_png",
    "new_figure",
]

CORRUPTED_COLOR = "#56b4e9"
QUERY_COLOR = (0, 160, 60)  # green outline, as in the paper's Fig. 7
GALLERY_COLOR = (240, 140, 0)  # orange outline
MARK_COLORS = dict(NUISANCE_COLORS, corrupted=CORRUPTED_COLOR)
METHOD_STYLE = {
    "learned": ("#d55e00", "o"),
    "learned-step": ("#e69f00", "D"),
    "topt-select": ("#0072b2", "s"),
    "topt-rank": ("#56b4e9", "^"),
}


def _rgb(hex_colour: str) -> np.ndarray:
    h = hex_colour.lstrip("#")
    return np.array([int(h[k : k + 2], 16) for k in (0, 2, 4)], np.uint8)


class ClipSource:
    """Frames and per-frame nuisance flags of the clips of one split, for thumbnails.

    Args:
        tracklets: the split's tracklets (``dataset.query`` / ``.gallery``),
            aligned with the feature bank.
        size: ``(height, width)`` to load frames at (e.g. the network input
            size), or None for the stored size.
        corrupted: optional (N, M) bool plan (``reid_utils.experiments.clip_banks.test_plan``):
            clips taken from the corrupted bank are shown corrupted
            (``reid_utils.data.corruption.corrupt_clip``) and flagged ``corrupted``.
    """

    def __init__(self, tracklets: Sequence, size=None, corrupted: np.ndarray | None = None):
        self.tracklets = tracklets
        self.size = size
        self.corrupted = None if corrupted is None else np.asarray(corrupted, bool)
        if self.corrupted is not None and self.corrupted.shape[0] != len(tracklets):
            raise ValueError(
                f"corrupted: expected {len(tracklets)} rows (one per tracklet), got {self.corrupted.shape}"
            )

    def _is_corrupted(self, seq: int, clip: int | None) -> bool:
        return bool(self.corrupted is not None and clip is not None and self.corrupted[seq, clip])

    def frames(self, seq: int, frame_indices, clip: int | None = None) -> list:
        """(H, W, 3) uint8 frames of sequence ``seq`` at ``frame_indices``."""
        from reid_utils.data.transforms import load_frames

        t = self.tracklets[int(seq)]
        arr = load_frames([t.frames[int(i)] for i in frame_indices], self.size)
        if self._is_corrupted(seq, clip):
            from reid_utils.data.corruption import corrupt_clip

            arr = corrupt_clip(arr)
        return list(arr)

    def flags(self, seq: int, frame_indices, clip: int | None = None) -> list:
        """Per frame, the names of its annotated nuisances (and ``corrupted``)."""
        ann = getattr(self.tracklets[int(seq)], "annotations", None)
        extra = ["corrupted"] if self._is_corrupted(seq, clip) else []
        return [frame_nuisances(ann, int(i)) + extra for i in frame_indices]


def _mark(strip: np.ndarray, frames: list, flags: list | None, height: int, border: int, gap: int = 2):
    """Paint a small square per flag into the top-left corner of each frame of a strip."""
    if not flags:
        return strip
    sq = max(3, height // 9)
    x = border
    for f, names in zip(frames, flags):
        width = max(1, round(f.shape[1] * height / f.shape[0]))
        for k, name in enumerate(names or []):
            x0 = x + 1 + k * (sq + 1)
            if x0 + sq <= x + width:
                strip[border + 1 : border + 1 + sq, x0 : x0 + sq] = _rgb(MARK_COLORS.get(name, "#000000"))
        x += width + gap
    return strip


def clip_pair_image(
    q_frames: list,
    g_frames: list,
    height: int = 64,
    q_flags: list | None = None,
    g_flags: list | None = None,
    border: int = 3,
    gap: int = 8,
) -> np.ndarray:
    """A query clip and a gallery clip side by side, framed green / orange, nuisances marked.

    Args:
        q_frames, g_frames: lists of (H, W, 3) uint8 frames.
        height: frame height in pixels.
        q_flags, g_flags: optional per-frame lists of nuisance names.
        border: frame outline width; gap: white pixels between the clips.

    Returns:
        (height + 2 border, W, 3) uint8 image.
    """
    q = _mark(
        tracklet_strip(q_frames, height, border, np.array(QUERY_COLOR, np.uint8)), q_frames, q_flags, height, border
    )
    g = _mark(
        tracklet_strip(g_frames, height, border, np.array(GALLERY_COLOR, np.uint8)), g_frames, g_flags, height, border
    )
    return np.concatenate([q, np.full((q.shape[0], gap, 3), 255, np.uint8), g], axis=1)


def new_figure(figsize, fig=None, pyplot: bool = True):
    """A pyplot figure (default) or a bare ``matplotlib.figure.Figure`` (no pyplot state)."""
    if fig is not None:
        return fig
    if pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def figure_png(fig, dpi: int = 90) -> bytes:
    """PNG bytes of a figure (Agg canvas; works for pyplot and bare figures)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if fig.canvas is None or not hasattr(fig.canvas, "print_png"):
        FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _clean_axes(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _draw_column(axes, pair: pd.DataFrame, n: int, q_source, g_source, title: str, height: int):
    """Fill 2n clip-pair axes and one heatmap axis for one sequence pair (rows of clip_pair_table)."""
    from reid_utils.experiments.importance import extreme_clip_pairs

    ext = extreme_clip_pairs(pair, n)
    Mq, Mg = int(pair["i"].max()) + 1, int(pair["j"].max()) + 1
    rows = list(ext[ext["which"] == "highest"].itertuples()) + list(ext[ext["which"] == "lowest"].itertuples())
    q, g = int(pair["q"].iloc[0]), int(pair["g"].iloc[0])
    for ax, r in zip(axes[: 2 * n], rows):
        _clean_axes(ax)
        has_frames = hasattr(r, "q_frames") and q_source is not None and g_source is not None
        if has_frames:
            img = clip_pair_image(
                q_source.frames(q, r.q_frames, r.i),
                g_source.frames(g, r.g_frames, r.j),
                height,
                q_source.flags(q, r.q_frames, r.i),
                g_source.flags(g, r.g_frames, r.j),
            )
            ax.imshow(img)
        else:
            ax.text(
                0.5,
                0.5,
                f"query clip {r.i} | gallery clip {r.j}",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
            )
        ax.set_title(
            f"{r.which} #{r.order + 1}: clips ({r.i}, {r.j})  α/mean {r.alpha_rel:.2f}  cos {r.cos:.2f}", fontsize=8
        )
    ax = axes[2 * n]
    a = np.zeros((Mq, Mg))
    a[pair["i"].to_numpy(), pair["j"].to_numpy()] = pair["alpha_rel"].to_numpy()
    im = ax.imshow(a, cmap="magma")
    ax.grid(False)
    ax.set(xlabel="gallery clip j", ylabel="query clip i")
    ax.set_xticks(range(Mg))
    ax.set_yticks(range(Mq))
    for r in rows:
        ax.add_patch(_rect(r.j, r.i, "#00c853" if r.which == "highest" else "#2962ff"))
    ax.set_title("importance α / mean (green: highest, blue: lowest)", fontsize=8)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    axes[0].annotate(
        title, xy=(0.5, 1.35), xycoords="axes fraction", ha="center", va="bottom", fontsize=8.5, fontweight="bold"
    )


def _rect(x, y, colour):
    import matplotlib.patches as mpatches

    return mpatches.Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor=colour, lw=2.2)


def _legend(fig, y: float = 1.0, ncol: int | None = None):
    import matplotlib.patches as mpatches

    handles = [mpatches.Patch(color=c, label=k.replace("_", " ")) for k, c in MARK_COLORS.items()]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=ncol or len(handles),
        frameon=False,
        fontsize=8,
        bbox_to_anchor=(0.5, y),
    )


def pair_title(row) -> str:
    """Column heading: the sequences, their identities, the kind of pair and its similarity."""
    kind = f"{row['kind']}, " if "kind" in row and isinstance(row["kind"], str) else ""
    return (
        f"query {int(row['q'])} (pid {int(row['q_pid'])}) vs gallery {int(row['g'])} "
        f"(pid {int(row['g_pid'])})\n{kind}similarity s = {float(row['similarity']):.3f}"
    )


def plot_pair_importance(
    pair: pd.DataFrame,
    title: str,
    q_source=None,
    g_source=None,
    n: int = 2,
    height: int = 56,
    fig=None,
    pyplot: bool = True,
):
    """One sequence pair: its 2n extreme clip pairs and its M x M importance map.

    Args:
        pair: the M^2 rows of one sequence pair from
            ``reid_utils.experiments.importance.clip_pair_table`` (with ``q_frames``/``g_frames`` to
            show thumbnails).
        title: heading (e.g. :func:`pair_title`).
        q_source, g_source: :class:`ClipSource` (or any object with
            ``frames``/``flags``) for thumbnails; None: labels only.
        n: clip pairs shown at each end.
        height: thumbnail frame height (pixels).
        fig: figure to draw into; else a new one (pyplot unless ``pyplot=False``).
    """
    if pair[["q", "g"]].drop_duplicates().shape[0] != 1:
        raise ValueError("pair: expected the rows of exactly one sequence pair")
    fig = new_figure((4.6, 1.05 * 2 * n + 3.0), fig, pyplot)
    gs = fig.add_gridspec(2 * n + 1, 1, height_ratios=[1] * (2 * n) + [2.6], hspace=0.55)
    axes = [fig.add_subplot(gs[k, 0]) for k in range(2 * n + 1)]
    _draw_column(axes, pair, n, q_source, g_source, title, height)
    _legend(fig, 1.0, ncol=3)
    return fig


def plot_fig7(
    examples: pd.DataFrame,
    table: pd.DataFrame,
    q_source=None,
    g_source=None,
    n: int = 2,
    height: int = 56,
    fig=None,
    pyplot: bool = True,
):
    """The paper's Fig. 7 on our data: one column per example sequence pair.

    Args:
        examples: ``reid_utils.experiments.importance.choose_examples`` rows (``q``, ``g``, ``kind``,
            ``similarity``, ``q_pid``, ``g_pid``).
        table: ``reid_utils.experiments.importance.clip_pair_table`` rows of those pairs (with frames).
        q_source, g_source: :class:`ClipSource` of the query / gallery split.
        n: highest / lowest clip pairs per example (2 in the paper).
        height: thumbnail frame height (pixels).
    """
    if examples.empty:
        raise ValueError("examples: expected at least one sequence pair")
    cols = len(examples)
    fig = new_figure((4.4 * cols, 1.05 * 2 * n + 3.4), fig, pyplot)
    gs = fig.add_gridspec(2 * n + 1, cols, height_ratios=[1] * (2 * n) + [2.6], hspace=0.55, wspace=0.25)
    for c, (_, ex) in enumerate(examples.iterrows()):
        pair = table[(table["q"] == ex["q"]) & (table["g"] == ex["g"])]
        if len(pair) == 0:
            raise ValueError(f"table: no clip pairs for query {ex['q']} and gallery {ex['g']}")
        axes = [fig.add_subplot(gs[k, c]) for k in range(2 * n + 1)]
        _draw_column(axes, pair, n, q_source, g_source, pair_title(ex), height)
    _legend(fig, 1.0)
    return fig


def plot_importance_auc(
    auc: pd.DataFrame,
    methods: Sequence[str] = ("learned", "learned-step", "topt-select", "topt-rank"),
    fig=None,
    pyplot: bool = True,
):
    """ROC AUC of low importance per nuisance, per method, with bootstrap intervals.

    Args:
        auc: ``reid_utils.experiments.importance_vs_nuisance.importance_auc`` / ``.measure`` rows
            (``method``, ``method_label``, ``nuisance``, ``auc``, ``lo``,
            ``hi``, ``prevalence``; one panel per ``level`` when present).
        methods: which methods to draw (in this order).
    """
    df = auc[auc["method"].isin(methods)]
    if df.empty:
        raise ValueError(f"auc: no rows for methods {list(methods)}")
    levels = sorted(df["level"].unique()) if "level" in df else [None]
    fig = new_figure((6.2 * len(levels), 3.9), fig, pyplot)
    axes = fig.subplots(1, len(levels), squeeze=False, sharey=True)[0]
    for ax, lv in zip(axes, levels):
        sub = df if lv is None else df[df["level"] == lv]
        names = list(dict.fromkeys(sub["nuisance"]))
        x = np.arange(len(names))
        present = [m for m in methods if m in set(sub["method"])]
        for k, m in enumerate(present):
            r = sub[sub["method"] == m].set_index("nuisance").reindex(names)
            off = (k - (len(present) - 1) / 2) * 0.18
            colour, marker = METHOD_STYLE.get(m, ("k", "o"))
            y = r["auc"].to_numpy(float)
            err = np.vstack([y - r["lo"].to_numpy(float), r["hi"].to_numpy(float) - y])
            ax.errorbar(
                x + off,
                y,
                yerr=np.where(np.isfinite(err), err, 0),
                fmt=marker,
                color=colour,
                capsize=3,
                ms=6,
                label=r["method_label"].dropna().iloc[0] if r["method_label"].notna().any() else m,
            )
        prev = sub.drop_duplicates("nuisance").set_index("nuisance")["prevalence"].reindex(names)
        ax.axhline(0.5, color="0.3", ls="--", lw=1.2)
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{nm.replace('_', ' ')}\n{100 * p:.0f} % of pairs" for nm, p in zip(names, prev)], fontsize=8
        )
        ttl = "AUC of low importance for 'pair contains X'"
        if lv is not None:
            ttl += f", $M_c^{{max}}$ = {int(lv)}"
        ax.set(title=ttl, ylim=(0, 1))
    axes[0].set_ylabel("ROC AUC (0.5 = chance)")
    axes[-1].legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
