"""Figures: one saving helper and the plots the notebooks share.

Every notebook saves its figures through :func:`save_fig`, into the figures
directory of the active profile (the repo's ``figures/`` for ``default``, a
temporary directory in tests).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use(matplotlib.get_backend())  # keep inline backends in notebooks
import matplotlib.pyplot as plt  # noqa: E402

from .cache import atomic_write_bytes  # noqa: E402


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
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None} if fmt == "png" else None)
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
    return [atomic_write_bytes(figures_dir / f"{name}.csv", csv.encode()),
            atomic_write_bytes(figures_dir / f"{name}.md", md.encode())]


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


def plot_ranked_results(query_thumbs, gallery_thumbs, matches, titles=None, thumb_height: int = 64,
                        border: int = 4, match_colour=(0, 160, 60), miss_colour=(210, 30, 30),
                        query_colour=(60, 60, 60), cell_width: float = 1.6):
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

    fig, axes = plt.subplots(nq, k + 1, figsize=(cell_width * (k + 1), 1.1 * cell_width * nq),
                             squeeze=False)
    for q in range(nq):
        panels = [(query_thumbs[q], query_colour)] + [
            (gallery_thumbs[q][r], match_colour if matches[q, r] else miss_colour) for r in range(k)]
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
