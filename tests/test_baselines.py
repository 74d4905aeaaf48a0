"""The colour-histogram baseline (reid_utils.experiments.baselines)."""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from reid_utils.experiments import baselines

H, W = 64, 32


def _frame(path, body_rgb, bg_rgb=(90, 90, 90), gain=(1.0, 1.0, 1.0), noise=0, seed=0):
    """A 'person' (central band, upper and lower colours) on a background."""
    img = np.empty((H, W, 3), np.float64)
    img[:] = bg_rgb
    img[8:36, 10:22] = body_rgb[0]
    img[36:60, 11:21] = body_rgb[1]
    img = img * np.asarray(gain)
    if noise:
        img += np.random.default_rng(seed).normal(0, noise, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=95)
    return str(path)


def _tracklet(tmp_path, name, body, n=4, **kw):
    d = tmp_path / name
    d.mkdir()
    return [_frame(d / f"{i}.jpg", body, seed=i, noise=3, **kw) for i in range(n)]


RED = ((200, 30, 30), (40, 40, 60))
BLUE = ((30, 40, 200), (40, 40, 60))


def test_features_shape_and_normalisation(tmp_path):
    t = [_tracklet(tmp_path, "a", RED), _tracklet(tmp_path, "b", BLUE, n=1)]
    f = baselines.color_histogram_features(t, bins=(8, 3, 3), stripes=3)
    assert f.shape == (2, 3 * 8 * 3 * 3) and f.dtype == np.float32
    assert np.all(f >= 0) and np.allclose(np.linalg.norm(f, axis=1), 1, atol=1e-5)
    # frame order and duplicates do not change an average histogram
    g = baselines.color_histogram_features([t[0][::-1], t[0] + t[0]])
    assert np.allclose(g[0], g[1], atol=1e-6)


def test_same_colours_rank_first(tmp_path):
    q = _tracklet(tmp_path, "q", RED)
    same = _tracklet(tmp_path, "same", ((190, 40, 35), (45, 40, 60)), bg_rgb=(120, 110, 100))
    other = _tracklet(tmp_path, "other", BLUE)
    f = baselines.color_histogram_features([q, same, other])
    d = np.linalg.norm(f[0] - f[1:], axis=1)
    assert d[0] < d[1]


def test_grey_world_removes_a_colour_cast(tmp_path):
    a = _tracklet(tmp_path, "a", RED)
    b = _tracklet(tmp_path, "b", RED, gain=(1.2, 1.0, 0.75))
    on = baselines.color_histogram_features([a, b], grey_world=True)
    off = baselines.color_histogram_features([a, b], grey_world=False)
    assert np.linalg.norm(on[0] - on[1]) < 0.5 * np.linalg.norm(off[0] - off[1])


def test_centre_weighting_suppresses_the_background(tmp_path):
    a = _tracklet(tmp_path, "a", RED, bg_rgb=(90, 90, 90))
    b = _tracklet(tmp_path, "b", RED, bg_rgb=(60, 160, 60))
    w = baselines.color_histogram_features([a, b], center_sigma=0.15)
    u = baselines.color_histogram_features([a, b], center_sigma=None)
    assert np.linalg.norm(w[0] - w[1]) < np.linalg.norm(u[0] - u[1])


def test_max_frames_and_resizing(tmp_path):
    t = _tracklet(tmp_path, "a", RED, n=6)
    big = tmp_path / "big.jpg"
    Image.open(t[0]).resize((W * 4, H * 4)).save(big)
    f = baselines.color_histogram_features([t, [str(big)]], max_frames=2)
    assert f.shape[0] == 2 and np.isfinite(f).all()


def test_bad_input_raises_clear_errors(tmp_path):
    t = _tracklet(tmp_path, "a", RED, n=1)
    with pytest.raises(ValueError, match="tracklet 1 has no frames"):
        baselines.color_histogram_features([t, []])
    with pytest.raises(ValueError, match="missing.jpg"):
        baselines.color_histogram_features([[str(tmp_path / "missing.jpg")]])
    with pytest.raises(ValueError, match="bins"):
        baselines.color_histogram_features([t], bins=(0, 3, 3))
    with pytest.raises(ValueError, match="center_sigma"):
        baselines.color_histogram_features([t], center_sigma=-1)


def test_baseline_on_a_tiny_dataset(tmp_path):
    colours = [RED, BLUE, ((30, 160, 40), (200, 200, 200))]
    mk = lambda pid, cam, k: SimpleNamespace(  # noqa: E731
        frames=_tracklet(tmp_path, f"{pid}_{cam}_{k}", colours[pid - 1]), pid=pid, camid=cam
    )
    ds = SimpleNamespace(
        query=[mk(p, 0, 0) for p in (1, 2, 3)], gallery=[mk(p, 1, 1) for p in (1, 2, 3)] + [mk(p, 0, 2) for p in (1, 2)]
    )
    r = baselines.color_histogram_baseline(ds, progress=False, max_rank=3)
    assert set(r) >= {"mAP", "cmc", "rank1", "rank5", "distmat", "protocol"}
    assert r["distmat"].shape == (3, 5) and len(r["cmc"]) == 3
    assert r["mAP"] == pytest.approx(1.0) and r["rank1"] == pytest.approx(1.0)


def test_cached_baseline_is_computed_once(tmp_path, monkeypatch):
    from reid_utils.config import get_config

    mk = lambda frames, pid, cam: SimpleNamespace(frames=frames, pid=pid, camid=cam)  # noqa: E731
    ds = SimpleNamespace(
        query=[mk(_tracklet(tmp_path, "q", RED), 1, 0)],
        gallery=[mk(_tracklet(tmp_path, "g1", RED), 1, 1), mk(_tracklet(tmp_path, "g2", BLUE), 2, 1)],
        protocol="torchreid",
    )
    cfg = get_config("smoke", artifacts_dir=str(tmp_path / "art"))
    first = baselines.cached_color_histogram_baseline(cfg, ds)
    direct = baselines.color_histogram_baseline(ds, progress=False)
    assert first["mAP"] == direct["mAP"] == 1.0 and np.allclose(first["distmat"], direct["distmat"])
    monkeypatch.setattr(
        baselines, "color_histogram_baseline", lambda *a, **k: pytest.fail("recomputed instead of read from the cache")
    )
    again = baselines.cached_color_histogram_baseline(cfg, ds)
    assert again["mAP"] == first["mAP"] and np.array_equal(again["cmc"], first["cmc"])
