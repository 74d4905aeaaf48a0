"""Figures: one saving helper and the plots the notebooks share.

Every notebook saves its figures through :func:`save_fig`, into the figures
directory of the active profile (the repo's ``figures/`` for ``default``, a
temporary directory in tests).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use(matplotlib.get_backend())  # keep inline backends in notebooks
import matplotlib.pyplot as plt  # noqa: E402

from reid_utils.cache import atomic_write_bytes  # noqa: E402


def save_fig(fig, name: str, figures_dir: str | Path, dpi: int = 130, formats=("png",)) -> list[Path]:
    """Save ``fig`` as ``<figures_dir>/<name>.<fmt>`` atomically; return the paths.

    Args:
        fig: a matplotlib Figure.
        name: file stem, e.g. ``"fig3_sampling"``.
        figures_dir: the profile's ``cfg.figures_path``.
    """
    import io

    out = []
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(
            buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else None
        )
        out.append(atomic_write_bytes(figures_dir / f"{name}.{fmt}", buf.getvalue()))
    return out


def save_table(df, name: str, figures_dir: str | Path, float_format: str = "%.4f") -> list[Path]:
    """Save a pandas DataFrame as ``<name>.csv`` and ``<name>.md`` (atomic)."""
    figures_dir = Path(figures_dir)
    csv = df.to_csv(float_format=float_format)
    try:
        md = df.to_markdown(floatfmt=float_format.replace("%", ""))
    except ImportError:  # tabulate not installed: a plain fixed-width rendering
        md = "```\n" + df.to_string(float_format=lambda v: float_format % v) + "\n```\n"
    return [
        atomic_write_bytes(figures_dir / f"{name}.csv", csv.encode()),
        atomic_write_bytes(figures_dir / f"{name}.md", md.encode()),
    ]


def setup_style():
    """The house style: seaborn's whitegrid, readable font sizes."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130})


def _tracklet_strip(frames, height: int, border: int, colour, gap: int = 2):
    """Frames of one tracklet side by side at a common height, framed in ``colour``.

    Args:
        frames: non-empty list of (H, W, 3) uint8 arrays (sizes may differ).
        height: output frame height in pixels (nearest-neighbour resize).
        border: frame width in pixels (0: none). colour: RGB uint8 triple.

    Returns:
        (height + 2 border, W_total + 2 border, 3) uint8 array.
    """
    import numpy as np

    if len(frames) == 0:
        raise ValueError("frames: a tracklet needs at least one frame")
    tiles = []
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise ValueError(f"frames[{i}]: expected an (H, W, 3) uint8 image, got {f.shape} {f.dtype}")
        width = max(1, round(f.shape[1] * height / f.shape[0]))
        rows = (np.arange(height) * f.shape[0] // height).clip(0, f.shape[0] - 1)
        cols = (np.arange(width) * f.shape[1] // width).clip(0, f.shape[1] - 1)
        tiles.append(f[rows][:, cols])
        if i < len(frames) - 1:
            tiles.append(np.full((height, gap, 3), 255, np.uint8))
    strip = np.concatenate(tiles, axis=1)
    if border:
        strip = np.pad(strip, ((border, border), (border, border), (0, 0)))
        strip[:border], strip[-border:] = colour, colour
        strip[:, :border], strip[:, -border:] = colour, colour
    return strip


def plot_ranked_results(
    query_thumbs,
    gallery_thumbs,
    matches,
    titles=None,
    thumb_height: int = 64,
    border: int = 4,
    match_colour=(0, 160, 60),
    miss_colour=(210, 30, 30),
    query_colour=(60, 60, 60),
    cell_width: float = 1.6,
):
    """Ranked retrieval results: one row per query, the query tracklet then its top-k.

    Each gallery tracklet is framed green if it is a true match, red otherwise
    (paper Sec. 4, qualitative results). Takes already-loaded images so it does
    not depend on any dataset loader.

    Args:
        query_thumbs: list (one per query) of lists of (H, W, 3) uint8 frames.
        gallery_thumbs: list (one per query) of lists (ranked, length k) of
            lists of (H, W, 3) uint8 frames.
        matches: (num_query, k) booleans, ``matches[q][r]`` = rank r+1 is a
            true match of query q.
        titles: optional list (one per query) of ``1 + k`` strings (query
            first); default ``"query"`` and ``"rank r"``.
        thumb_height: frame height in pixels inside the figure.
        border: border width in pixels.
        match_colour, miss_colour, query_colour: RGB uint8 border colours.
        cell_width: inches per panel.

    Returns:
        matplotlib Figure.
    """
    import numpy as np

    matches = np.asarray(matches, dtype=bool)
    nq = len(query_thumbs)
    if nq == 0:
        raise ValueError("query_thumbs: expected at least one query")
    if len(gallery_thumbs) != nq:
        raise ValueError(f"gallery_thumbs: expected {nq} rows (one per query), got {len(gallery_thumbs)}")
    k = len(gallery_thumbs[0])
    if any(len(row) != k for row in gallery_thumbs):
        raise ValueError("gallery_thumbs: every query needs the same number of ranked tracklets")
    if matches.shape != (nq, k):
        raise ValueError(f"matches: expected shape {(nq, k)}, got {matches.shape}")
    if titles is not None and (len(titles) != nq or any(len(t) != k + 1 for t in titles)):
        raise ValueError(f"titles: expected {nq} lists of {k + 1} strings (query first)")

    fig, axes = plt.subplots(nq, k + 1, figsize=(cell_width * (k + 1), 1.1 * cell_width * nq), squeeze=False)
    for q in range(nq):
        panels = [(query_thumbs[q], query_colour)] + [
            (gallery_thumbs[q][r], match_colour if matches[q, r] else miss_colour) for r in range(k)
        ]
        for c, (frames, colour) in enumerate(panels):
            ax = axes[q, c]
            ax.imshow(_tracklet_strip(frames, thumb_height, border, np.asarray(colour, np.uint8)))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            label = titles[q][c] if titles is not None else ("query" if c == 0 else f"rank {c}")
            ax.set_title(label, fontsize=8)
    fig.tight_layout()
    return fig


# -- notebook 00: data and sampling ------------------------------------------
NUISANCE_COLORS = {
    "occlusion": "#e69f00",
    "empty": "#999999",
    "id_switch": "#d55e00",
    "bad_crop": "#cc79a7",
    "blur": "#0072b2",
}


def plot_dataset_stats(stats: dict):
    """Two panels: tracklet-length histograms (log x) and tracklets per camera.

    Args:
        stats: the dict of ``datasets.dataset_statistics`` (uses its
            ``"lengths"`` and ``"per_camera"`` entries).
    """
    import numpy as np

    lengths_by_split = {k: v for k, v in stats["lengths"].items() if k != "total" and len(v)}
    per_cam = stats["per_camera"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    all_len = np.concatenate([np.asarray(v) for v in lengths_by_split.values() if len(v)])
    bins = np.unique(np.geomspace(max(1, all_len.min()), all_len.max() + 1, 25).astype(int))
    for split, lens in lengths_by_split.items():
        axes[0].hist(lens, bins=bins, histtype="step", lw=2, label=f"{split} (median {int(np.median(lens))})")
    axes[0].set(
        xscale="log",
        xlabel="tracklet length (frames, log scale)",
        ylabel="tracklets",
        title="Heavy-tailed tracklet lengths",
    )
    axes[0].xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(frameon=False)
    num_cameras = per_cam.shape[1]
    width = 0.8 / max(1, len(per_cam.index))
    for k, split in enumerate(per_cam.index):
        axes[1].bar(np.arange(num_cameras) + k * width, per_cam.loc[split].to_numpy(), width=width, label=split)
    axes[1].set(
        xticks=np.arange(num_cameras) + 0.4 - width / 2,
        xticklabels=[f"C{c + 1}" for c in range(num_cameras)],
        ylabel="tracklets",
        title="Tracklets per camera",
    )
    axes[1].legend(frameon=False)
    fig.tight_layout()
    return fig


def contact_sheet(rows, titles=None, flags=None, thumb_height=64):
    """Frames of several tracklets, one row each, nuisance frames marked.

    Args:
        rows: list of lists of HxWx3 uint8 frames (one list per tracklet).
        titles: optional row labels.
        flags: optional list (per row) of lists (per frame) of nuisance names
            (keys of ``NUISANCE_COLORS``) present on that frame.
    """
    import matplotlib.patches as mpatches

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    h, w = rows[0][0].shape[:2]
    scale = thumb_height / h
    fig, axes = plt.subplots(
        n_rows, n_cols, squeeze=False, figsize=(n_cols * w * scale / 60 + 0.6, n_rows * (thumb_height / 60 + 0.25))
    )
    for r, frames in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c >= len(frames):
                continue
            ax.imshow(frames[c])
            marks = (flags[r][c] if flags else []) or []
            for k, name in enumerate(marks):
                ax.add_patch(
                    mpatches.Rectangle((1 + 5 * k, 1), 4, 4, color=NUISANCE_COLORS[name], transform=ax.transData)
                )
            if marks:
                for s in ax.spines.values():
                    s.set_visible(True)
                    s.set_color(NUISANCE_COLORS[marks[0]])
                    s.set_linewidth(2.5)
        if titles:
            axes[r, 0].set_ylabel(titles[r], rotation=0, ha="right", va="center", fontsize=8)
    handles = [mpatches.Patch(color=col, label=name.replace("_", " ")) for name, col in NUISANCE_COLORS.items()]
    fig_h = fig.get_size_inches()[1]
    fig.subplots_adjust(wspace=0.04, hspace=0.08, top=1 - 0.45 / fig_h)
    fig.legend(
        handles=handles, loc="upper center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, 1.0), fontsize=8
    )
    return fig


def plot_sampling_methods(num_frames: int, selections: dict, clips=None, thumbs=None):
    """Table 1 drawn on one tracklet: which frames each sampling method picks.

    Args:
        num_frames: tracklet length.
        selections: ``{method: frame indices}`` (e.g. from ``sampling.sample_clip``).
        clips: optional (M, L) indices of the M clips of Sec. 3.1, drawn as a last row.
        thumbs: optional list of all HxWx3 frames, shown as a film strip on top.
    """
    import numpy as np

    rows = list(selections.items()) + ([("M clips (Sec. 3.1)", None)] if clips is not None else [])
    n = len(rows)
    fig, ax = plt.subplots(figsize=(11, 0.55 * n + 1.2))
    for k, (name, idx) in enumerate(rows):
        y = n - 1 - k
        ax.plot([0, num_frames - 1], [y, y], color="0.85", lw=6, solid_capstyle="butt", zorder=0)
        if idx is not None:
            idx = np.asarray(idx)
            ax.scatter(idx, np.full(len(idx), y), s=40, zorder=2, label=name)
        else:
            cmap = plt.get_cmap("tab10")
            for m, clip in enumerate(np.asarray(clips)):
                off = (m % 2) * 0.18 - 0.09
                ax.plot(clip, np.full(len(clip), y + off), "-o", ms=3, color=cmap(m % 10), lw=2)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r[0] for r in rows][::-1])
    ax.set_xlabel("frame index")
    ax.set_xlim(-1, num_frames)
    ax.set_title(f"Frame sampling methods on one {num_frames}-frame tracklet (Table 1)")
    if thumbs is not None:
        step = max(1, len(thumbs) // 16)
        strip = np.concatenate(list(thumbs[::step]), axis=1)
        inset = ax.inset_axes([0, 1.12, 1, 0.5])
        inset.imshow(strip)
        inset.axis("off")
    fig.tight_layout()
    return fig


def plot_calibration(results: dict, cmcs: dict | None = None):
    """Bar chart of mAP / rank-1 per method, plus CMC curves.

    Args:
        results: ``{method: {"mAP": float, "rank1": float}}`` in [0, 1].
        cmcs: optional ``{method: cmc array}``.
    """
    import numpy as np

    fig, axes = plt.subplots(1, 2 if cmcs else 1, figsize=(11 if cmcs else 5.5, 3.6), squeeze=False)
    ax = axes[0, 0]
    names = list(results)
    x = np.arange(len(names))
    for k, metric in enumerate(["mAP", "rank1"]):
        vals = [100 * results[n][metric] for n in names]
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, width=0.38, label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set(xticks=x, xticklabels=names, ylabel="%", ylim=(0, 100), title="Difficulty calibration")
    ax.legend(frameon=False)
    if cmcs:
        ax = axes[0, 1]
        for n, cmc in cmcs.items():
            ax.plot(np.arange(1, len(cmc) + 1), 100 * np.asarray(cmc), label=n)
        ax.set(xlabel="rank", ylabel="CMC (%)", ylim=(0, 100), xscale="log", title="CMC")
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


NUISANCES = tuple(NUISANCE_COLORS)


def frame_nuisances(annotations, i: int) -> list[str]:
    """Names of the nuisances annotated on frame ``i`` (synthetic benchmark)."""
    if annotations is None:
        return []
    return [n for n in NUISANCES if n in annotations.dtype.names and float(annotations[n][i]) > 0]


def nuisance_contact_sheet(tracklets, frames_per_row: int = 10, size=None):
    """Contact sheet of tracklets with their annotated nuisance frames marked.

    Args:
        tracklets: ``datasets.Tracklet`` objects (with ``.annotations`` on the
            synthetic benchmark; without, nothing is marked).
        frames_per_row: frames shown per tracklet, evenly spaced.
        size: optional ``(height, width)`` to resize thumbnails.
    """
    from reid_utils.data.transforms import thumbnails

    rows, flags, titles = [], [], []
    for t in tracklets:
        idx, frames = thumbnails(t, num=frames_per_row, size=size)
        rows.append(frames)
        flags.append([frame_nuisances(t.annotations, int(i)) for i in idx])
        titles.append(f"pid {t.pid} C{t.camid + 1}\n{len(t)} frames")
    return contact_sheet(rows, titles=titles, flags=flags)


# -- notebooks 01-03: I3D training and the Sec. 4.3 ablations ---------------------
def plot_training_curves(histories: dict, smooth: int = 10):
    """Loss terms and periodic test mAP of I3D training runs.

    Args:
        histories: ``{label: DataFrame}`` with ``iteration, loss, triplet, softmax``
            and ``mAP`` (NaN where not evaluated), as returned by ``train.train_i3d``;
            with a ``phase`` column (``train.trained_i3d``'s shared trunk then
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


def plot_sampling_ablation(df, metric: str = "mAP", paper_label: str | None = None):
    """Fig. 3: one panel per L_train; metric vs L_test, one line per sampling method.

    Args:
        df: ``experiments_i3d.sampling_ablation`` output (metrics in %).
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


def ranked_results_figure(dataset, distmat, query_indices, k: int = 5, frames: int = 3):
    """The ranked-results figure for chosen queries of ``dataset``.

    Args:
        dataset: ``VideoDataset`` whose ``.query``/``.gallery`` index ``distmat``.
        distmat: (Q, G) distances (smaller = more similar).
        query_indices: which queries to show (rows).
        k: gallery tracklets shown per query (junk-free, same-camera matches
            removed as in the evaluation protocol).
        frames: thumbnails per tracklet.
    """
    import numpy as np

    from reid_utils.data.transforms import thumbnails
    from reid_utils.eval.ranking import evaluate_rank

    q, g = dataset.query, dataset.gallery
    res = evaluate_rank(
        np.asarray(distmat),
        np.array([t.pid for t in q]),
        np.array([t.pid for t in g]),
        np.array([t.camid for t in q]),
        np.array([t.camid for t in g]),
        max_rank=min(k, len(g)),
        return_details=True,
    )
    q_th, g_th, matches, titles = [], [], [], []
    for qi in query_indices:
        q_th.append(thumbnails(q[qi], num=frames)[1])
        ranked = [int(i) for i in res.ranked_indices[qi, :k] if i >= 0]
        g_th.append([thumbnails(g[i], num=frames)[1] for i in ranked])
        matches.append(list(res.ranked_matches[qi, : len(ranked)]))
        titles.append([f"query pid {q[qi].pid}"] + [f"#{r + 1} pid {g[i].pid}" for r, i in enumerate(ranked)])
    width = max(len(m) for m in matches)
    matches = [m + [False] * (width - len(m)) for m in matches]
    return plot_ranked_results(q_th, g_th, matches, titles=titles)


# -- notebooks 04-05: clip similarity aggregation, corruption (Sec. 3.1, 4.4) --
AGG_METHOD_COLORS = {"mean": "#7f7f7f", "topt-e": "#0072b2", "topt-te": "#e69f00", "learned": "#d55e00"}


def plot_agg_training(histories: dict, smooth: int = 20):
    """Training curves of aggregators: batch-hard loss, mined similarities, active anchors.

    Args:
        histories: ``{label: DataFrame}`` of ``agg_train.train_aggregator``
            histories (``iteration``, ``loss``, ``hard_pos_sim``,
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


def plot_method_bars(results, title: str = "Sequence similarity from M clips"):
    """mAP and rank-1 bars per method.

    Args:
        results: DataFrame indexed by method label with ``mAP`` and ``rank1``
            columns, in percent.
    """
    import numpy as np

    names = list(results.index)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 3.8))
    for k, metric in enumerate(["mAP", "rank1"]):
        bars = ax.bar(x + (k - 0.5) * 0.38, results[metric].to_numpy(), width=0.38, label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set(xticks=x, ylabel="%", title=title)
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_ylim(0, min(100, 1.2 * float(results[["mAP", "rank1"]].to_numpy().max()) + 5))
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_importance_heatmaps(panels):
    """Importance scores and clip-pair cosines of sequence pairs as M x M maps.

    Args:
        panels: list of ``(title, alpha (Mq, Mg), cos (Mq, Mg))``: one row per
            sequence pair; alpha is shown normalised to mean 1 (alpha / mean).
    """
    import numpy as np

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
    import numpy as np

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
    import numpy as np

    n = len(examples)
    if n == 0:
        raise ValueError("examples: expected at least one (clean, corrupted) pair")
    fig, axes = plt.subplots(n, 2, figsize=(9, 1.0 + 0.024 * height * n), squeeze=False)
    for r, (clean, bad) in enumerate(examples):
        for c, (clip, name) in enumerate([(clean, "clean clip"), (bad, "corrupted clip")]):
            ax = axes[r, c]
            ax.imshow(_tracklet_strip(list(np.asarray(clip)), height, 0, None))
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
