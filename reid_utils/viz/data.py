"""Figures of the data and the evaluation protocol (notebook 00; Sec. 4.1, Table 1).

Dataset statistics, contact sheets of tracklets with their annotated nuisance
frames marked (colours :data:`NUISANCE_COLORS`, keyed by
``reid_utils.synth.NUISANCES``), the frame-sampling methods of Table 1
(Sec. 4.3), the difficulty calibration, and ranked retrieval results.
:func:`tracklet_strip` builds the frame strips the other viz modules draw.
"""

from __future__ import annotations

import matplotlib
import matplotlib.ticker
import numpy as np

from reid_utils.synth import NUISANCES
from reid_utils.viz.style import plt

__all__ = [
    "NUISANCE_COLORS",
    "contact_sheet",
    "frame_nuisances",
    "nuisance_contact_sheet",
    "plot_calibration",
    "plot_dataset_stats",
    "plot_ranked_results",
    "plot_sampling_methods",
    "ranked_results_figure",
    "tracklet_strip",
]


def tracklet_strip(frames, height: int, border: int, colour, gap: int = 2):
    """Frames of one tracklet side by side at a common height, framed in ``colour``.

    Args:
        frames: non-empty list of (H, W, 3) uint8 arrays (sizes may differ).
        height: output frame height in pixels (nearest-neighbour resize).
        border: frame width in pixels (0: none). colour: RGB uint8 triple.

    Returns:
        (height + 2 border, W_total + 2 border, 3) uint8 array.
    """
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
            ax.imshow(tracklet_strip(frames, thumb_height, border, np.asarray(colour, np.uint8)))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            label = titles[q][c] if titles is not None else ("query" if c == 0 else f"rank {c}")
            ax.set_title(label, fontsize=8)
    fig.tight_layout()
    return fig


_PALETTE = {
    "occlusion": "#e69f00",
    "empty": "#999999",
    "id_switch": "#d55e00",
    "bad_crop": "#cc79a7",
    "blur": "#0072b2",
}
if set(_PALETTE) != set(NUISANCES):
    raise ImportError(f"viz.data: nuisance colours {sorted(_PALETTE)} do not match synth.NUISANCES {sorted(NUISANCES)}")
NUISANCE_COLORS = {name: _PALETTE[name] for name in NUISANCES}  # in the order of synth.NUISANCES


def plot_dataset_stats(stats: dict):
    """Two panels: tracklet-length histograms (log x) and tracklets per camera.

    Args:
        stats: the dict of ``reid_utils.data.datasets.dataset_statistics`` (uses its
            ``"lengths"`` and ``"per_camera"`` entries).
    """
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
        selections: ``{method: frame indices}`` (e.g. from ``reid_utils.data.sampling.sample_clip``).
        clips: optional (M, L) indices of the M clips of Sec. 3.1, drawn as a last row.
        thumbs: optional list of all HxWx3 frames, shown as a film strip on top.
    """
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


def frame_nuisances(annotations, i: int) -> list[str]:
    """Names of the nuisances annotated on frame ``i`` (synthetic benchmark)."""
    if annotations is None:
        return []
    return [n for n in NUISANCES if n in annotations.dtype.names and float(annotations[n][i]) > 0]


def nuisance_contact_sheet(tracklets, frames_per_row: int = 10, size=None):
    """Contact sheet of tracklets with their annotated nuisance frames marked.

    Args:
        tracklets: ``reid_utils.data.datasets.Tracklet`` objects (with ``.annotations`` on the
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
    from reid_utils.data.datasets import id_arrays
    from reid_utils.data.transforms import thumbnails
    from reid_utils.eval.ranking import evaluate_rank

    q, g = dataset.query, dataset.gallery
    q_pids, q_camids = id_arrays(q)
    g_pids, g_camids = id_arrays(g)
    res = evaluate_rank(
        np.asarray(distmat), q_pids, g_pids, q_camids, g_camids, max_rank=min(k, len(g)), return_details=True
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
