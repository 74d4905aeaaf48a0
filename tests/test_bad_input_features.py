"""Hardening probes for feature and model caches: frames replaced on disk must not be
served from a cache keyed by their paths (cached features, trained I3D, baseline)."""

import os

import pytest
import torch
from PIL import Image

from reid_utils.config import get_config
from reid_utils.data.datasets import DatasetError
from reid_utils.training import features as F
from tests.test_features import SIZE, make_tiny_dataset


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path / "data")


def _replace(path: str, colour: int) -> None:
    """Overwrite a frame in place with a flat image of another colour (same path)."""
    Image.new("RGB", (SIZE[1], SIZE[0]), (colour, 255 - colour, colour // 2)).save(path)


def test_key_changes_when_a_frame_is_replaced_in_place(tiny):
    tr = tiny.query + tiny.gallery
    before = F.tracklets_key(tr)
    assert F.tracklets_key(tr) == before  # stable while nothing changes
    _replace(tr[0].frames[0], 10)
    assert F.tracklets_key(tr) != before


def test_key_changes_when_only_the_modification_time_changes(tiny):
    tr = tiny.query
    before = F.tracklets_key(tr)
    st = os.stat(tr[-1].frames[-1])
    os.utime(tr[-1].frames[-1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert F.tracklets_key(tr) != before


def test_missing_frame_is_named(tiny):
    os.remove(tiny.gallery[1].frames[2])
    with pytest.raises(DatasetError, match=r"0002\.png: frame of tracklet .* cannot be read"):
        F.tracklets_key(tiny.gallery)


def test_cached_features_are_not_served_for_replaced_frames(tiny, tmp_path):
    """The probe: replace a dataset's frames in place; features must be recomputed."""
    from reid_utils.models.i3d import InceptionI3d

    torch.manual_seed(0)
    net = InceptionI3d(width_mult=0.125).eval()
    cfg = get_config(
        "smoke",
        artifacts_dir=str(tmp_path / "art"),
        device="cpu",
        model={"input_height": SIZE[0], "input_width": SIZE[1]},
    )
    tr = tiny.query + tiny.gallery
    a = F.get_features(cfg, net, tr, 1, 4, method="evenly", model_key="m", progress=False)
    for t in tr:
        for f in t.frames:
            _replace(f, 200)
    b = F.get_features(cfg, net, tr, 1, 4, method="evenly", model_key="m", progress=False)
    assert b.meta["key"] != a.meta["key"]
    assert not torch.equal(a.feats, b.feats)
    assert len(list(cfg.cache_root.glob("features-*.pt"))) == 2
