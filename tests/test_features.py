"""Tests of reid_utils.training.features: sampling methods, shapes, the corruption hook, caching."""

from pathlib import Path

import numpy as np
import pytest
import torch

from reid_utils.config import get_config
from reid_utils.data.datasets import Tracklet, VideoDataset
from reid_utils.models.i3d import InceptionI3d
from reid_utils.training import features as F

SIZE = (32, 16)


def make_tiny_dataset(root: Path, num_ids: int = 6, num_train_ids: int = 4, seed: int = 0) -> VideoDataset:
    """A tiny video re-ID set on disk: one colour per identity, two cameras, PNG frames.

    Identities ``1..num_train_ids`` form the training set (one tracklet per
    camera); the others give a query (camera 0) and a gallery (camera 1)
    tracklet each.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, size=(num_ids + 1, 3))
    train, query, gallery = [], [], []
    for pid in range(1, num_ids + 1):
        for cam in (0, 1):
            n = int(rng.integers(3, 11))
            d = root / f"{pid:04d}" / f"c{cam}"
            d.mkdir(parents=True, exist_ok=True)
            frames = []
            for k in range(n):
                img = np.clip(colours[pid] + rng.normal(0, 25, size=(*SIZE, 3)) + 10 * cam, 0, 255)
                img[: SIZE[0] // 2] = np.clip(img[: SIZE[0] // 2] * (0.5 + 0.1 * (pid % 3)), 0, 255)
                p = d / f"{k:04d}.png"
                Image.fromarray(img.astype(np.uint8)).save(p)
                frames.append(str(p))
            t = Tracklet(frames=tuple(frames), pid=pid, camid=cam, tid=f"{pid}/c{cam}")
            if pid <= num_train_ids:
                train.append(t)
            else:
                (query if cam == 0 else gallery).append(t)
    return VideoDataset("tiny", str(root), train, query, gallery, protocol="torchreid")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = InceptionI3d(width_mult=0.125)
    # give BN running statistics of real activations so eval-mode features are O(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm3d):
            mod.momentum = None
    m.train()
    with torch.no_grad():
        m.extract_features(torch.rand(4, 3, 4, *SIZE) * 2 - 1)
    return m.eval()


def _tracklets(ds):
    return ds.train + ds.query + ds.gallery


@pytest.mark.parametrize("method,M,L", [("clips", 3, 4), ("consec", 2, 4), ("random", 1, 4), ("evenly", 1, 8)])
def test_shapes_and_indices(tiny, net, method, M, L):
    tr = _tracklets(tiny)
    bank = F.extract_clip_features(net, tr, M, L, method, size=SIZE, progress=False, batch_size=5)
    assert bank.feats.shape == (len(tr), M, net.feat_dim) and bank.feats.dtype == torch.float32
    assert bank.indices.shape == (len(tr), M, L)
    assert np.array_equal(bank.pids, [t.pid for t in tr])
    assert np.array_equal(bank.camids, [t.camid for t in tr])
    for t, idx in zip(tr, bank.indices):
        assert idx.min() >= 0 and idx.max() < len(t.frames)
    assert torch.isfinite(bank.feats).all() and bank.feats.abs().sum() > 0
    n = bank.normalised().norm(dim=-1)
    assert torch.allclose(n, torch.ones_like(n), atol=1e-5)


def test_features_equal_direct_forward_and_do_not_depend_on_batching(tiny, net):
    from reid_utils.data.transforms import load_clip

    tr = _tracklets(tiny)
    a = F.extract_clip_features(net, tr, 2, 4, "clips", size=SIZE, progress=False, batch_size=3)
    b = F.extract_clip_features(net, tr, 2, 4, "clips", size=SIZE, progress=False, batch_size=64, num_workers=2)
    assert torch.allclose(a.feats, b.feats, rtol=1e-4, atol=1e-4)
    t, idx = tr[3], a.indices[3, 1]
    with torch.no_grad():
        ref = net.extract_features(load_clip([t.frames[k] for k in idx], SIZE)[None])[0]
    assert torch.allclose(a.feats[3, 1], ref, rtol=1e-4, atol=1e-4)


def test_random_methods_are_seeded_per_tracklet(tiny, net):
    tr = _tracklets(tiny)
    a = F.extract_clip_features(net, tr, 1, 3, "random", size=SIZE, seed=1, progress=False)
    b = F.extract_clip_features(net, tr, 1, 3, "random", size=SIZE, seed=1, progress=False, batch_size=2)
    assert np.array_equal(a.indices, b.indices)  # independent of batching
    assert torch.allclose(a.feats, b.feats, rtol=1e-4, atol=1e-4)
    c = F.extract_clip_features(net, tr, 1, 3, "random", size=SIZE, seed=2, progress=False)
    assert not np.array_equal(a.indices, c.indices)


def test_all_sampling_variable_lengths_and_chunking(tiny, net):
    tr = _tracklets(tiny)
    whole = F.extract_clip_features(net, tr, 1, 4, "all", size=SIZE, progress=False)
    assert whole.feats.shape == (len(tr), 1, net.feat_dim)
    assert [ix.shape[1] for ix in whole.indices] == [len(t.frames) for t in tr]
    chunked = F.extract_clip_features(net, tr, 1, 4, "all", size=SIZE, progress=False, max_frames=4)
    # a tracklet of T > 4 frames is cut into ceil(T/4) near-equal chunks, averaged by length
    from reid_utils.data.transforms import load_clip

    i = int(np.argmax([len(t.frames) for t in tr]))
    T = len(tr[i].frames)
    n = -(-T // 4)
    bounds = [(k * T) // n for k in range(n + 1)]
    clip = load_clip(tr[i].frames, SIZE)
    with torch.no_grad():
        ref = sum(net.extract_features(clip[None, :, a:b])[0] * (b - a) / T for a, b in zip(bounds[:-1], bounds[1:]))
        full = net.extract_features(clip[None])[0]
    assert n > 1
    assert torch.allclose(chunked.feats[i, 0], ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(whole.feats[i, 0], full, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="single clip"):
        F.extract_clip_features(net, tr, 2, 4, "all", size=SIZE, progress=False)


def test_frame_transform_hook_applied_to_selected_clips_only(tiny, net):
    tr = _tracklets(tiny)
    calls = []

    def hook(frames, i, m):
        calls.append((i, m, frames.shape, frames.dtype))
        return 255 - frames if (i, m) == (2, 1) else frames

    clean = F.extract_clip_features(net, tr, 3, 4, "clips", size=SIZE, progress=False)
    hooked = F.extract_clip_features(net, tr, 3, 4, "clips", size=SIZE, progress=False, frame_transform=hook)
    assert len(calls) == 3 * len(tr)
    assert all(s == (4, *SIZE, 3) and d == np.uint8 for _, _, s, d in calls)
    diff = (clean.feats - hooked.feats).norm(dim=-1) / clean.feats.norm(dim=-1)
    assert diff[2, 1] > 1e-2
    diff[2, 1] = 0
    assert diff.max() < 1e-5
    with pytest.raises(ValueError, match="frame_transform"):
        F.extract_clip_features(
            net, tr, 1, 4, "clips", size=SIZE, progress=False, frame_transform=lambda f, i, m: f[:, :8]
        )


def test_get_features_caches_by_key(tiny, net, tmp_path):
    cfg = get_config(
        "smoke", artifacts_dir=str(tmp_path), device="cpu", model={"input_height": SIZE[0], "input_width": SIZE[1]}
    )
    tr = tiny.query + tiny.gallery
    with pytest.raises(TypeError, match="model_key"):  # the key of the weights is required
        F.get_features(cfg, net, tr, 2, 4, progress=False)
    with pytest.raises(ValueError, match="model_key"):
        F.get_features(cfg, net, tr, 2, 4, model_key="", progress=False)
    a = F.get_features(cfg, net, tr, 2, 4, model_key="m0", progress=False)
    files = sorted(p.name for p in cfg.cache_root.glob("features-*.pt"))
    assert len(files) == 1
    b = F.get_features(cfg, net, tr, 2, 4, model_key="m0", progress=False)
    assert torch.equal(a.feats, b.feats) and b.meta["key"] == a.meta["key"]
    assert len(list(cfg.cache_root.glob("features-*.pt"))) == 1  # loaded, not recomputed
    F.get_features(cfg, net, tr, 1, 4, model_key="m0", progress=False)
    F.get_features(cfg, net, tr, 2, 4, model_key="m1", progress=False)
    with pytest.raises(ValueError, match="transform_key"):
        F.get_features(cfg, net, tr, 2, 4, model_key="m0", frame_transform=lambda f, i, m: f)
    F.get_features(
        cfg, net, tr, 2, 4, model_key="m0", frame_transform=lambda f, i, m: f, transform_key="identity", progress=False
    )
    assert len(list(cfg.cache_root.glob("features-*.pt"))) == 4


def test_average_clips_and_tracklets_key(tiny):
    x = torch.tensor([[[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]]])
    assert torch.allclose(F.average_clips(x), torch.tensor([[4 / 3, 2.0]]))
    assert torch.allclose(
        F.average_clips(x, normalise_clips=True), torch.tensor([[(0.6 + 0 + 1) / 3, (0.8 + 1 + 0) / 3]])
    )
    assert F.average_clips(x, num=1).shape == (1, 2)
    assert torch.allclose(F.average_clips(x, num=1), x[:, 1])  # the middle clip
    assert F.tracklets_key(tiny.train) == F.tracklets_key(list(tiny.train))
    assert F.tracklets_key(tiny.train) != F.tracklets_key(tiny.train[::-1])
