"""Block diagram of the whole method, drawn in code (after the paper's Fig. 2; Sec. 3.1, Eqs. 1-4, 9).

:func:`plot_method_diagram` draws, left to right: the M clips of a query and a gallery
tracklet, the I3D with shared weights, the clip features, the M^2 element-wise products
c_t in their visiting order, the recurrence of the importance network g_theta with its
running state (Eqs. 1-2) and the similarity (Eqs. 3-4); below it, smaller, the top-t%
baseline (Eq. 9). Clips can be marked as corrupted (Sec. 4.4), with the clip pairs they
enter. Every box is a patch whose ``gid`` names it (``"i3d-query"``, ``"g_theta"``,
``"pair-5"``, ...), so a test or a reader can find it.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.patches as mpatches

from reid_utils.viz.importance import CORRUPTED_COLOR, GALLERY_COLOR, QUERY_COLOR
from reid_utils.viz.style import plt

__all__ = ["plot_method_diagram", "MAX_DIAGRAM_CLIPS"]

MAX_DIAGRAM_CLIPS = 8  # clips drawn per tracklet (the paper's M); more do not fit the drawing
_Q = tuple(c / 255 for c in QUERY_COLOR)
_G = tuple(c / 255 for c in GALLERY_COLOR)
_BOX = "#eef2f7"  # fill of the processing boxes
_LOOP = "#fff4e5"  # fill of the recurrence's boxes
_MUTED = "#6b6b6b"  # the top-t% panel


def _box(ax, x, y, w, h, text, gid, fc=_BOX, ec="#333333", fontsize=9.5, color="k"):
    """A rounded box with its lower-left corner at (x, y) and ``text`` (in ``color``) in its centre."""
    ax.add_patch(
        mpatches.FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", fc=fc, ec=ec, lw=1.2, gid=gid
        )
    )
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, color=color)


def _arrow(ax, start, end, text=None, offset=(0.0, 0.18), color="#333333", ls="-", fontsize=9):
    """An arrow from ``start`` to ``end`` (data units), ``text`` at its middle plus ``offset``."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2, ls=ls))
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, ha="center", va="bottom" if offset[1] >= 0 else "top", fontsize=fontsize, color=color)


def _tracklet_column(ax, M, y, who, colour, corrupted):
    """Clips s^1..s^M of one tracklet, the I3D, the clip features f_1..f_M (one row)."""
    name = "q" if who == "query" else "g"
    w = min(0.62, 2.3 / M - 0.12)
    x0 = 0.25 + (2.3 - M * (w + 0.12) + 0.12) / 2
    ax.text(1.4, y + 0.72, f"{who} tracklet $\\mathbf{{x}}_{name}$", ha="center", fontsize=9.5, color=colour)
    for i in range(M):
        bad = i in corrupted
        x = x0 + i * (w + 0.12)
        ax.add_patch(
            mpatches.Rectangle(
                (x, y - 0.45), w, 0.9, fc=CORRUPTED_COLOR if bad else "white", ec=colour, lw=1.8, gid=f"clip-{who}-{i}"
            )
        )
        label = f"$\\mathbf{{s}}_{name}^{{{i + 1}}}$" if M <= 4 else str(i + 1)  # narrow clips: the index only
        ax.text(x + w / 2, y, label, ha="center", va="center", fontsize=8.5 if M <= 4 else 7)
    ax.text(1.4, y - 0.62, "M clips of L frames", ha="center", va="top", fontsize=8, color=_MUTED)
    _arrow(ax, (2.6, y), (3.15, y))
    _box(ax, 3.15, y - 0.55, 1.4, 1.1, "I3D\n$f_\\xi$", f"i3d-{who}")
    _arrow(ax, (4.55, y), (5.05, y))
    bw = min(0.22, 1.3 / M - 0.05)
    fx0 = 5.1 + (1.4 - M * (bw + 0.05)) / 2
    for i in range(M):
        ax.add_patch(
            mpatches.Rectangle(
                (fx0 + i * (bw + 0.05), y - 0.5),
                bw,
                1.0,
                fc=CORRUPTED_COLOR if i in corrupted else "#d9d9d9",
                ec="#333333",
                lw=0.8,
                gid=f"feat-{who}-{i}",
            )
        )
    ax.text(5.8, y + 0.62, f"$\\mathbf{{f}}_{{{name},1}}, \\dots, \\mathbf{{f}}_{{{name},M}}$", ha="center", fontsize=9)


def _pair_grid(ax, M, ymid, cq, cg):
    """The M x M clip pairs c_t, numbered in visiting order; returns the grid's right edge."""
    cs = min(0.55, 2.6 / M)
    gx0, gy1 = 8.45 - M * cs / 2, ymid + M * cs / 2
    for i in range(M):
        for j in range(M):
            n_bad = (i in cq) + (j in cg)
            t = i * M + j + 1
            ax.add_patch(
                mpatches.Rectangle(
                    (gx0 + j * cs, gy1 - (i + 1) * cs),
                    cs,
                    cs,
                    fc=CORRUPTED_COLOR if n_bad else "#f2f2f2",
                    alpha=(1.0, 0.45, 0.9)[n_bad],
                    ec="#555555",
                    lw=0.8,
                    gid=f"pair-{t}",
                )
            )
            ax.text(
                gx0 + (j + 0.5) * cs,
                gy1 - (i + 0.5) * cs,
                str(t),
                ha="center",
                va="center",
                fontsize=7.5 if M <= 5 else 6,
            )
    ax.text(8.45, gy1 + 0.15, "$\\mathbf{c}_t = \\mathbf{f}_{q,i} \\odot \\mathbf{f}_{g,j}$", ha="center", fontsize=10)
    ax.text(
        8.45,
        ymid - M * cs / 2 - 0.12,
        "rows: query clips $i$,\ncolumns: gallery clips $j$;\nall pairs, row-major:\nstep $t = (i-1)M + j$",
        ha="center",
        va="top",
        fontsize=8,
    )
    return gx0, gx0 + M * cs


def _recurrence(ax, x_in, ymid):
    """Eqs. 1-2 as a loop (difference, g_theta, update, state) and the similarity (Eqs. 3-4)."""
    ax.add_patch(
        mpatches.FancyBboxPatch(
            (10.0, ymid - 2.55),
            6.5,
            4.2,
            boxstyle="round,pad=0.02,rounding_size=0.2",
            fc="none",
            ec="#999999",
            ls="--",
            lw=1.0,
            gid="loop",
        )
    )
    ax.text(10.15, ymid - 2.35, "for $t = 1, \\dots, M^2$  (Eqs. 1-2)", ha="left", va="center", fontsize=9)
    ax.add_patch(mpatches.Circle((10.75, ymid), 0.24, fc="white", ec="#333333", lw=1.2, gid="difference"))
    ax.text(10.75, ymid, "$-$", ha="center", va="center", fontsize=12)
    _arrow(ax, (x_in, ymid), (10.51, ymid), "$\\mathbf{c}_t$", offset=(-0.2, 0.05))
    ax.plot([10.3, 10.3, 14.95], [ymid, ymid + 1.35, ymid + 1.35], color="#333333", lw=1.2)  # c_t to the update
    _arrow(ax, (14.95, ymid + 1.35), (14.95, ymid + 0.75))
    _arrow(ax, (10.99, ymid), (11.45, ymid))
    _box(ax, 11.45, ymid - 0.6, 1.75, 1.2, "", "g_theta", fc=_LOOP)
    ax.text(12.32, ymid + 0.3, "$g_\\theta$", ha="center", va="center", fontsize=14)
    ax.text(12.32, ymid - 0.22, "2 x [Linear, BN,\nReLU, Dropout],\nLinear, softplus", ha="center", va="center",
            fontsize=6.3, color=_MUTED)  # fmt: skip
    ax.text(12.15, ymid + 0.72, "$\\alpha_t = g_\\theta(\\mathbf{r}_{t-1} - \\mathbf{c}_t)$  (Eq. 1)", ha="center",
            fontsize=8.5)  # fmt: skip
    _arrow(ax, (13.2, ymid), (13.55, ymid), "$\\alpha_t$", offset=(0.0, -0.2))
    _box(
        ax,
        13.55,
        ymid - 0.75,
        2.8,
        1.5,
        "$\\mathcal{A}_t = \\mathcal{A}_{t-1} + \\alpha_t$\n"
        "$\\mathbf{r}_t = \\mathbf{r}_{t-1} + \\frac{\\alpha_t}{\\mathcal{A}_t}(\\mathbf{c}_t - \\mathbf{r}_{t-1})$\n"
        "(Eq. 2)",
        "update",
        fc=_LOOP,
        fontsize=8.5,
    )
    _box(ax, 11.7, ymid - 2.05, 2.3, 0.8, "state $\\mathbf{r}_{t-1}, \\mathcal{A}_{t-1}$\n"
         "($\\mathbf{r}_0 = \\mathbf{0}$, $\\mathcal{A}_0 = 0$)", "state", fc="white", fontsize=8)  # fmt: skip
    ax.plot([14.95, 14.95], [ymid - 0.75, ymid - 1.65], color="#333333", lw=1.2)
    _arrow(ax, (14.95, ymid - 1.65), (14.0, ymid - 1.65), "$\\mathbf{r}_t$", offset=(0.3, 0.03))
    ax.plot([11.7, 10.75], [ymid - 1.65, ymid - 1.65], color="#333333", lw=1.2)
    _arrow(ax, (10.75, ymid - 1.65), (10.75, ymid - 0.24), "$\\mathbf{r}_{t-1}$", offset=(0.35, -0.05))
    _arrow(ax, (16.35, ymid), (17.0, ymid), "$\\mathbf{r}_{M^2}$", offset=(0.0, 0.1))
    _box(ax, 17.0, ymid - 0.4, 0.8, 0.8, "$\\sum_d$", "sum", fontsize=11)
    _arrow(ax, (17.8, ymid), (18.3, ymid))
    ax.add_patch(mpatches.Rectangle((18.3, ymid - 0.45), 1.5, 0.9, fc="white", ec="#333333", lw=1.4, gid="similarity"))
    ax.text(19.05, ymid, "$s(\\mathbf{x}_q, \\mathbf{x}_g)$", ha="center", va="center", fontsize=10)
    ax.text(18.55, ymid - 0.65, "$s = \\sum_d r^d_{M^2}$  (Eq. 4)\n"
            "$= \\frac{\\sum_t \\alpha_t \\cos_t}{\\sum_t \\alpha_t}$  (Eq. 3)", ha="center", va="top",
            fontsize=9)  # fmt: skip


def _topt_panel(ax, y):
    """The top-t% baseline (Eq. 9) as a muted chain of boxes under the main diagram."""
    ax.text(6.0, y + 0.62, "baseline, top-t% aggregation (Eq. 9, Sec. 4.4), in place of the recurrence:",
            ha="left", fontsize=9, color=_MUTED)  # fmt: skip
    boxes = [
        (5.1, 2.6, "learned linear map\n$\\mathbf{f}\\,' = W\\mathbf{f}$", "topt-projection"),
        (8.3, 2.5, "cosines of the\n$M^2$ clip pairs", "topt-cosines"),
        (11.4, 3.4, "keep the $k$ highest,\n$k = \\max(1, \\mathrm{round}(t M^2 / 100))$", "topt-select"),
        (15.4, 3.0, "their mean:\n$s_{\\mathrm{top}-t}(\\mathbf{x}_q, \\mathbf{x}_g)$", "topt-mean"),
    ]
    for n, (x, w, text, gid) in enumerate(boxes):
        _box(ax, x, y - 0.85, w, 0.95, text, gid, fc="white", ec=_MUTED, fontsize=8.5, color=_MUTED)
        if n:
            px = boxes[n - 1][0] + boxes[n - 1][1]
            _arrow(ax, (px, y - 0.37), (x, y - 0.37), color=_MUTED)
    _arrow(ax, (5.8, y + 2.15), (5.8, y + 0.15), color=_MUTED, ls="--")


def _check_clips(value, M: int, name: str) -> set[int]:
    """The clip indices of ``value`` as a set, or ValueError naming the argument ``name``."""
    try:
        out = [int(i) for i in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a sequence of clip indices 0..{M - 1}, got {value!r}") from None
    if any(i < 0 or i >= M for i in out) or len(set(out)) != len(out):
        raise ValueError(f"{name}: expected distinct clip indices in 0..{M - 1} (M = {M}), got {list(value)}")
    return set(out)


def plot_method_diagram(
    M: int = 3,
    corrupted_query: Sequence[int] = (),
    corrupted_gallery: Sequence[int] = (),
    show_topt: bool = True,
    title: str | None = None,
):
    """Block diagram of learned clip similarity aggregation (the paper's Fig. 2, redrawn).

    Draws the whole method of Sec. 3.1: M clips of each of the query and the gallery
    tracklet, the I3D f_xi (one network, shared weights) giving the clip features f_q,i
    and f_g,j (D-dim, L2-normalised), the element-wise products c_t = f_q,i * f_g,j of
    the M^2 clip pairs numbered in their row-major visiting order t = (i-1)M + j
    (clips counted from 1; t - 1 = iM + j when counted from 0, as in the code), and the
    recurrence alpha_t = g_theta(r_{t-1} - c_t) (Eq. 1) with the running mean r_t and
    its weight sum A_t (Eq. 2) kept in a state that starts at r_0 = 0, A_0 = 0
    (``reid_utils.models.learned_aggregator``), ending in s = sum_d r_{M^2}^d (Eq. 4)
    = the alpha-weighted mean cosine (Eq. 3). ``show_topt`` adds, smaller, the top-t%
    baseline of Sec. 4.4 (Eq. 9). Corrupted clips (Sec. 4.4) are filled in
    ``viz.CORRUPTED_COLOR``, with their features and every clip pair they enter (light:
    one corrupted clip, dark: both).

    Args:
        M: clips per tracklet drawn, 1..``MAX_DIAGRAM_CLIPS`` (8, the paper's M; 3 reads best).
        corrupted_query: indices (0..M-1) of the query clips to mark as corrupted.
        corrupted_gallery: the same for the gallery clips.
        show_topt: draw the top-t% panel (Eq. 9).
        title: figure title (default: what is drawn, with the paper's figure).

    Returns:
        matplotlib ``Figure`` with one axis (data units, no ticks); every box is a patch
        with a ``gid``: ``clip-query-i``, ``clip-gallery-j``, ``feat-query-i``,
        ``feat-gallery-j`` (i, j from 0), ``i3d-query``, ``i3d-gallery``, ``pair-t``
        (t = 1..M^2), ``loop``, ``difference``, ``g_theta``, ``update``, ``state``, ``sum``,
        ``similarity`` and, with ``show_topt``, ``topt-projection``, ``topt-cosines``,
        ``topt-select``, ``topt-mean``.

    Raises:
        ValueError: ``M`` outside 1..``MAX_DIAGRAM_CLIPS``, or a clip index outside 0..M-1.
    """
    if isinstance(M, bool) or not isinstance(M, int) or not 1 <= M <= MAX_DIAGRAM_CLIPS:
        raise ValueError(f"M: expected an integer in 1..{MAX_DIAGRAM_CLIPS} (clips drawn per tracklet), got {M!r}")
    cq = _check_clips(corrupted_query, M, "corrupted_query")
    cg = _check_clips(corrupted_gallery, M, "corrupted_gallery")
    y0 = 2.6 if show_topt else 0.0  # the main diagram sits above the top-t% panel
    height = y0 + 6.6
    fig, ax = plt.subplots(figsize=(20.2 * 0.68, height * 0.68))
    ax.set(xlim=(0, 20.2), ylim=(0, height), aspect="equal")
    ax.axis("off")
    yq, yg, ymid = y0 + 5.0, y0 + 1.6, y0 + 3.3
    _tracklet_column(ax, M, yq, "query", _Q, cq)
    _tracklet_column(ax, M, yg, "gallery", _G, cg)
    ax.plot([3.85, 3.85], [yg + 0.55, yq - 0.55], color="#333333", ls="--", lw=1.2)
    ax.text(3.85, ymid, "shared\nweights", ha="center", va="center", fontsize=8,
            bbox=dict(fc="white", ec="none", pad=1.0))  # fmt: skip
    gx0, gx1 = _pair_grid(ax, M, ymid, cq, cg)
    _arrow(ax, (6.5, yq - 0.55), (gx0 - 0.05, ymid + 0.3))
    _arrow(ax, (6.5, yg + 0.55), (gx0 - 0.05, ymid - 0.3))
    _recurrence(ax, gx1 + 0.05, ymid)
    if show_topt:
        _topt_panel(ax, 1.4)
    if cq or cg:
        ax.legend(
            handles=[mpatches.Patch(fc=CORRUPTED_COLOR, ec="#555555", label="corrupted clip, and the pairs it enters")],
            loc="upper left",
            bbox_to_anchor=(0.0, 1.0),
            fontsize=8,
            frameon=False,
        )
    ax.set_title(
        title or "Learned clip similarity aggregation (Sec. 3.1; after the paper's Fig. 2)", fontsize=11, loc="left"
    )
    return fig
