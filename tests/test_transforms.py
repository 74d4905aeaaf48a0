"""Frame loading: RGB, [-1, 1], (B, C, T, H, W), resize, cache, clear errors."""

import fixtures_builders as fb
import numpy as np
import pytest
import torch
from PIL import Image

from reid_utils.config import get_config
from reid_utils.data.datasets import DatasetError, Tracklet
from reid_utils.data.transforms import (
    FrameCache,
    clip_paths,
    frames_to_tensor,
    input_size,
    load_clip,
    load_clips,
    load_frame,
    tensor_to_frames,
    thumbnails,
)


def _png(path, colour, size=(8, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size[1], size[0]), colour).save(path)
    return str(path)


def test_load_clip_values_layout_and_rgb_order(tmp_path):
    red = _png(tmp_path / "red.png", (255, 0, 0))
    black = _png(tmp_path / "black.png", (0, 0, 0))
    mid = _png(tmp_path / "mid.png", (0, 0, 128))
    x = load_clip([red, black, mid, red], size=None)
    assert x.shape == (3, 4, 8, 4) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.all(x[:, 0] == torch.tensor([1.0, -1.0, -1.0])[:, None, None]), "RGB, 255 -> 1"
    assert torch.all(x[:, 1] == -1), "0 -> -1"
    assert torch.allclose(x[2, 2], torch.full((8, 4), 128 / 127.5 - 1), atol=1e-6)


def test_resize_grayscale_and_batch(tmp_path):
    a = _png(tmp_path / "a.png", (10, 200, 30), size=(20, 10))
    g = _png(tmp_path / "g.png", 90, size=(5, 7), mode="L")  # grayscale, other size
    x = load_clip([a, g], size=(16, 8))
    assert x.shape == (3, 2, 16, 8)
    assert torch.allclose(x[:, 1], torch.full((3, 16, 8), 90 / 127.5 - 1), atol=1e-6), "L -> RGB"
    b = load_clips([[a, g], [g, g], [a, a]], size=(16, 8), progress=False)
    assert b.shape == (3, 3, 2, 16, 8)
    assert torch.equal(b[0], x)
    with pytest.raises(DatasetError, match="different sizes"):
        load_clip([a, g], size=None)
    with pytest.raises(ValueError, match="equal clip lengths"):
        load_clips([[a], [a, a]], size=(16, 8))
    with pytest.raises(ValueError, match="size"):
        load_clip([a], size=(16,))
    cfg = get_config("smoke")
    assert input_size(cfg) == (cfg.model.input_height, cfg.model.input_width)


def test_unreadable_and_missing_frames_name_the_file(tmp_path):
    bad = tmp_path / "0001C1T0001F001.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="cannot be decoded") as ei:
        load_clip([str(bad)], size=(8, 4))
    assert str(bad) in str(ei.value)
    good = _png(tmp_path / "ok.png", (1, 2, 3))
    with pytest.raises(DatasetError, match="does not exist") as ei:
        load_clips([[good], [str(tmp_path / "gone.png")]], size=(8, 4))
    assert "gone.png" in str(ei.value)
    truncated = tmp_path / "trunc.jpg"
    fb.write_image(truncated, (50, 60, 70), size=(64, 32))
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DatasetError, match="trunc.jpg"):
        load_frame(str(truncated))


def test_frame_cache_lru(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", (i, i, i)) for i in range(4)]
    one = 8 * 4 * 3
    cache = FrameCache(max_bytes=2 * one)
    first = load_frame(paths[0], None, cache)
    assert cache.misses == 1 and len(cache) == 1
    assert load_frame(paths[0], None, cache) is first and cache.hits == 1
    load_frame(paths[1], None, cache)
    load_frame(paths[0], None, cache)  # 0 is now most recent
    load_frame(paths[2], None, cache)  # evicts 1
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes
    cached_paths = {k[0] for k in cache._data}
    assert str(paths[1]) not in cached_paths and str(paths[0]) in cached_paths
    x = load_clips([[paths[0], paths[2]]] * 3, size=None, cache=cache, progress=False)
    assert torch.equal(x[0], load_clip([paths[0], paths[2]]))
    assert not first.flags.writeable, "cached frames are read-only"


def test_roundtrip_thumbnails_and_clip_paths(tmp_path):
    frames = tuple(_png(tmp_path / f"{i:04d}.png", (i * 10, 0, 0)) for i in range(12))
    t = Tracklet(frames=frames, pid=1, camid=0, tid="t")
    clip = load_clip(clip_paths(t, [0, 5, 11]))
    back = tensor_to_frames(clip)
    assert back.dtype == np.uint8 and back.shape == (3, 8, 4, 3)
    assert back[:, 0, 0, 0].tolist() == [0, 50, 110]
    assert torch.equal(frames_to_tensor(back), clip)
    idx, th = thumbnails(t, num=4)
    assert idx.tolist() == [1, 4, 7, 10] and len(th) == 4
    assert all(a.dtype == np.uint8 and a.shape == (8, 4, 3) for a in th)
    assert [a[0, 0, 0] for a in th] == [10, 40, 70, 100]
    idx, th = thumbnails(frames[:2], num=8, size=(16, 8))
    assert idx.tolist() == [0, 1] and th[0].shape == (16, 8, 3)
    with pytest.raises(IndexError, match="outside tracklet"):
        clip_paths(t, [12])


def test_augment_clip_identity_jitter_and_erasing():
    import numpy as np
    import torch

    from reid_utils.data.transforms import augment_clip, augment_params

    x = torch.rand(3, 4, 16, 8) * 2 - 1
    p0 = augment_params(np.random.default_rng(0), 0.0, 0.0)
    assert torch.allclose(augment_clip(x, p0), x)
    p = augment_params(np.random.default_rng(1), 0.3, 1.0)
    y = augment_clip(x, p)
    assert y.shape == x.shape and y.dtype == x.dtype and float(y.abs().max()) <= 1.0
    assert torch.equal(y, augment_clip(x, p))  # deterministic given params
    assert not torch.allclose(y, x)
    # the erased box is the same on every frame (an occluder, not flicker)
    changed = (augment_clip(x, {**p, "gain": np.ones(3, np.float32), "offset": 0.0}) != x).any(0)
    assert changed.any() and (changed == changed[0]).all()
    with pytest.raises(ValueError, match="augment_clip"):
        augment_clip(torch.zeros(4, 16, 8), p0)
