"""The method's block diagram (reid_utils.viz.diagram): its boxes, labels, corrupted marks and bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from reid_utils import viz  # noqa: E402
from reid_utils.viz.diagram import MAX_DIAGRAM_CLIPS, plot_method_diagram  # noqa: E402


@pytest.fixture
def draw():
    """Call plot_method_diagram, render the figure (mathtext errors surface only when drawn), close it after."""
    figs = []

    def make(**kw):
        fig = plot_method_diagram(**kw)
        fig.canvas.draw()
        figs.append(fig)
        return fig

    yield make
    for fig in figs:
        plt.close(fig)


def _patches(fig):
    return {p.get_gid(): p for p in fig.axes[0].patches if p.get_gid()}


def _texts(fig):
    ax = fig.axes[0]
    return " | ".join([t.get_text() for t in ax.texts] + [ax.get_title(loc="left")])


def test_viz_exports_the_diagram():
    assert viz.plot_method_diagram is plot_method_diagram
    assert "plot_method_diagram" in viz.__all__


@pytest.mark.parametrize("M", [1, 3, MAX_DIAGRAM_CLIPS])
def test_every_block_of_the_method_is_a_named_box(draw, M):
    fig = draw(M=M)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    boxes = _patches(fig)
    for who in ("query", "gallery"):
        assert {f"clip-{who}-{i}" for i in range(M)} <= set(boxes)
        assert {f"feat-{who}-{i}" for i in range(M)} <= set(boxes)
        assert f"clip-{who}-{M}" not in boxes
        assert f"i3d-{who}" in boxes
    # the M^2 clip pairs, numbered 1..M^2 in visiting order, and nothing beyond
    assert {g for g in boxes if g.startswith("pair-")} == {f"pair-{t}" for t in range(1, M * M + 1)}
    assert {"loop", "difference", "g_theta", "update", "state", "sum", "similarity"} <= set(boxes)


def test_labels_name_the_networks_the_state_and_the_equations(draw):
    fig = draw(M=3)
    text = _texts(fig)
    for label in ("I3D", r"g_\theta", "shared\nweights", r"\mathbf{r}_{t-1}", r"\mathcal{A}_t", r"\odot"):
        assert label in text, label
    for eq in ("Eq. 1", "Eq. 2", "Eq. 3", "Eq. 4", "Eq. 9", "Fig. 2"):
        assert eq in text, eq
    assert r"\mathbf{r}_0 = \mathbf{0}" in text  # the start of the recurrence the package uses
    # the pair grid's cells carry their visiting step t = (i-1)M + j, 1..M^2
    assert {str(t) for t in range(1, 10)} <= {t.get_text() for t in fig.axes[0].texts}


def test_the_top_t_panel_is_optional(draw):
    with_panel, without = draw(M=3, show_topt=True), draw(M=3, show_topt=False)
    topt = {"topt-projection", "topt-cosines", "topt-select", "topt-mean"}
    assert topt <= set(_patches(with_panel))
    assert not topt & set(_patches(without))
    assert "Eq. 9" in _texts(with_panel) and "Eq. 9" not in _texts(without)


def test_corrupted_clips_colour_their_features_and_exactly_the_pairs_they_enter(draw):
    M = 4
    fig = draw(M=M, corrupted_query=(1,), corrupted_gallery=(2, 3))
    boxes = _patches(fig)
    bad = mcolors.to_rgb(viz.CORRUPTED_COLOR)

    def is_bad(gid):
        return mcolors.to_rgb(boxes[gid].get_facecolor()) == bad

    assert [is_bad(f"clip-query-{i}") for i in range(M)] == [False, True, False, False]
    assert [is_bad(f"feat-gallery-{j}") for j in range(M)] == [False, False, True, True]
    for i in range(M):
        for j in range(M):
            n_bad = (i == 1) + (j in (2, 3))
            pair = boxes[f"pair-{i * M + j + 1}"]
            assert is_bad(f"pair-{i * M + j + 1}") == (n_bad > 0), (i, j)
            if n_bad:  # both clips corrupted: drawn darker than one
                assert pair.get_alpha() == (0.45, 0.9)[n_bad - 1]
    assert fig.axes[0].get_legend() is not None
    assert draw(M=M).axes[0].get_legend() is None  # no corrupted clip, no legend


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"M": 0}, "M"),
        ({"M": MAX_DIAGRAM_CLIPS + 1}, "M"),
        ({"M": 2.5}, "M"),
        ({"M": 3, "corrupted_query": (3,)}, "corrupted_query"),
        ({"M": 3, "corrupted_gallery": (0, 0)}, "corrupted_gallery"),
        ({"M": 3, "corrupted_gallery": 1}, "corrupted_gallery"),
    ],
)
def test_bad_input_names_the_argument(kw, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        plot_method_diagram(**kw)
