"""Tests for reid_utils.viz.widgets.ImportanceExplorer, driven in Python on tiny random data."""

import logging
import re

import numpy as np
import pytest
import torch

from reid_utils.models.aggregation import LearnedClipAggregator
from reid_utils.viz.widgets import CLASSES, ImportanceExplorer

Q, G, M, L, D = 4, 7, 3, 2, 6


class FakeSource:
    """Frames of a split without any files: random-looking tiles per (sequence, frame)."""

    def __init__(self, fail_on=None):
        self.fail_on = fail_on

    def frames(self, seq, idx, clip=None):
        if self.fail_on is not None and int(seq) == self.fail_on:
            raise OSError(f"cannot read frames of sequence {seq}")
        return [np.full((12, 6, 3), (41 * int(seq) + 13 * int(i)) % 256, np.uint8) for i in idx]

    def flags(self, seq, idx, clip=None):
        return [["blur"] if int(i) % 3 == 0 else [] for i in idx]


def _explorer(**kw):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = LearnedClipAggregator(D, 8).eval()
    qf, gf = torch.randn(Q, M, D, generator=gen), torch.randn(G, M, D, generator=gen)
    q_pids, g_pids = np.array([1, 2, 3, 1]), np.array([1, 2, 3, 4, 1, 2, 5])
    q_cam, g_cam = np.zeros(Q, int), np.array([1, 1, 0, 1, 0, 1, 1])
    args = dict(
        similarity=None,
        q_clip_frames=np.arange(Q * M * L).reshape(Q, M, L),
        g_clip_frames=np.arange(G * M * L).reshape(G, M, L),
        q_source=FakeSource(),
        g_source=FakeSource(),
        topk=3,
        thumb_height=12,
    )
    args.update(kw)
    return ImportanceExplorer(model, qf, gf, q_pids, g_pids, q_cam, g_cam, **args)


def test_dom_classes_and_initial_state():
    ex = _explorer()
    assert CLASSES["container"] in ex.widget._dom_classes
    for w, key in (
        (ex.query, "query"),
        (ex.gallery, "gallery"),
        (ex.ranking, "ranking"),
        (ex.heatmap, "heatmap"),
        (ex.title, "title"),
        (ex.status, "status"),
    ):
        assert CLASSES[key] in w._dom_classes
    assert ex.status.value == "ready"
    assert "query 0" in ex.ranking_text.value
    assert ex.heatmap.value[:8] == b"\x89PNG\r\n\x1a\n" and ex.ranking_image.value[:4] == b"\x89PNG"
    assert int(ex.heatmap.width) > 0 and int(ex.ranking_image.width) > 0  # shown at natural size
    assert re.fullmatch(r"query 0 vs gallery \d+: similarity -?\d+\.\d{3}", ex.title.value)
    assert len(ex.gallery.options) == 3


def test_changing_the_query_updates_ranking_heatmap_and_title():
    ex = _explorer()
    before = (ex.ranking_text.value, ex.heatmap.value, ex.title.value, ex.ranking_image.value)
    ex.query.value = 2
    assert ex.status.value == "ready"
    assert ex.ranking_text.value != before[0] and "query 2" in ex.ranking_text.value
    for g in ex.ranked(2):
        assert f"gallery {g} " in ex.ranking_text.value
    assert ex.heatmap.value != before[1]
    assert ex.title.value != before[2] and ex.title.value.startswith("query 2 vs gallery ")
    assert ex.ranking_image.value != before[3]
    # the title's similarity is the model's for that pair and the first ranked item is the best one
    g = int(ex.gallery.value)
    assert g == int(ex.ranked(2)[0])
    s = float(ex.title.value.rsplit(" ", 1)[1])
    assert s == pytest.approx(ex.S[2, g], abs=1e-3)


def test_ranking_follows_the_protocol_and_marks_matches():
    ex = _explorer(topk=G)
    ranked = ex.ranked(0)
    # query 0 (pid 1, camera 0): gallery 4 (pid 1, camera 0) is left out, 0 (pid 1, camera 1) is kept
    assert 4 not in ranked and 0 in ranked
    assert np.all(np.diff(ex.S[0, ranked]) <= 0)
    assert ex.ranking_text.value.count("✓ match") == 1


def test_selecting_a_gallery_item_updates_the_heatmap():
    ex = _explorer()
    heat, title = ex.heatmap.value, ex.title.value
    other = [v for _, v in ex.gallery.options if v != ex.gallery.value][0]
    ex.gallery.value = other
    assert ex.status.value == "ready"
    assert ex.heatmap.value != heat and ex.title.value != title
    assert f"vs gallery {other}:" in ex.title.value


def test_errors_are_shown_and_logged(caplog):
    ex = _explorer()
    bad = int(ex.ranked(1)[0])
    ex.g_source = FakeSource(fail_on=bad)
    with caplog.at_level(logging.ERROR, logger="reid_utils.viz.widgets"):
        ex.query.value = 1
    assert ex.status.value.startswith("error: OSError")
    assert any("update failed" in r.message for r in caplog.records)
    ex.g_source = FakeSource()
    ex.query.value = 3
    assert ex.status.value == "ready"


def test_works_without_thumbnails_and_rejects_bad_input():
    ex = _explorer(q_source=None, g_source=None, q_clip_frames=None, g_clip_frames=None)
    assert ex.status.value == "ready"
    ex.query.value = 1
    assert ex.status.value == "ready" and "query 1" in ex.ranking_text.value
    with pytest.raises(ValueError, match="similarity"):
        _explorer(similarity=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="topk"):
        _explorer(topk=0)
    with pytest.raises(ValueError, match="queries"):
        _explorer(queries=[Q])
