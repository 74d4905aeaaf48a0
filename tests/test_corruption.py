"""Tests for reid_utils.data.corruption (Sec. 4.4)."""

import numpy as np
import pytest
import torch

from reid_utils.data.corruption import assemble_corrupted, corrupt_clip, corruption_plan


def _texture(T=2, H=64, W=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)


def _highpass_energy(frames):
    x = frames.astype(np.float64)
    # 3x3 box blur along H and W (edges wrap); high-pass = x - blur
    blur = sum(np.roll(np.roll(x, dy, axis=1), dx, axis=2) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
    return float(((x - blur) ** 2).mean())


def test_corrupt_clip_keeps_shape_dtype_and_list_type():
    clip = _texture(T=3, H=37, W=21)
    out = corrupt_clip(clip)
    assert out.shape == clip.shape and out.dtype == np.uint8
    as_list = corrupt_clip(list(clip))
    assert isinstance(as_list, list) and len(as_list) == 3
    assert all(f.shape == (37, 21, 3) and f.dtype == np.uint8 for f in as_list)
    assert np.array_equal(np.stack(as_list), out)  # deterministic


def test_corruption_removes_high_frequencies():
    clip = _texture()
    out = corrupt_clip(clip)
    before, after = _highpass_energy(clip), _highpass_energy(out)
    assert after < 0.1 * before, (before, after)
    # but keeps the low-frequency content: the mean colour is roughly preserved
    assert np.abs(out.mean(axis=(1, 2)) - clip.mean(axis=(1, 2))).max() < 10


def test_corrupt_clip_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        corrupt_clip(np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"frames\[1\]"):
        corrupt_clip([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])


def test_corruption_plan_counts_uniform_and_deterministic():
    N, M, mc = 8000, 8, 5
    plan = corruption_plan(N, M, mc, seed=3)
    assert plan.shape == (N, M) and plan.dtype == bool
    counts = plan.sum(1)
    assert counts.min() >= 0 and counts.max() <= mc
    hist = np.bincount(counts, minlength=mc + 1)
    expected = N / (mc + 1)
    assert len(hist) == mc + 1 and np.all(np.abs(hist - expected) < 0.15 * expected), hist
    per_clip = plan.mean(0)  # every clip position equally likely
    assert np.allclose(per_clip, per_clip.mean(), atol=0.03)
    assert np.array_equal(plan, corruption_plan(N, M, mc, seed=3))
    assert not np.array_equal(plan, corruption_plan(N, M, mc, seed=4))
    assert not corruption_plan(10, M, 0, seed=0).any()
    with pytest.raises(ValueError, match="max_corrupted"):
        corruption_plan(10, M, M + 1, seed=0)


def test_assemble_corrupted_picks_per_clip():
    clean = torch.zeros(4, 3, 2)
    bad = torch.ones(4, 3, 2)
    plan = corruption_plan(4, 3, 3, seed=1)
    out = assemble_corrupted(clean, bad, plan)
    assert torch.equal(out[..., 0].bool(), torch.as_tensor(plan))
    out_np = assemble_corrupted(clean.numpy(), bad.numpy(), plan)
    assert isinstance(out_np, np.ndarray) and np.array_equal(out_np, out.numpy())
    with pytest.raises(ValueError, match="plan"):
        assemble_corrupted(clean, bad, plan[:2])
