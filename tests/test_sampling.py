"""Frame sampling (Table 1), M clips per sequence (Sec. 3.1), P x K batches (Sec. 3.2)."""

import numpy as np
import pytest

from reid_utils.data.sampling import METHODS, PKSampler, pk_batch, sample_clip, sample_clips

LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 100, 920]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("L", [1, 4, 8, 16])
def test_sample_clip_length_bounds_order(method, L):
    rng = np.random.default_rng(0)
    for n in LENGTHS:
        for _ in range(5):
            idx = sample_clip(n, L, method, rng)
            assert idx.dtype == np.int64
            assert len(idx) == (n if method == "all" else L)
            assert idx.min() >= 0 and idx.max() < n
            assert np.all(np.diff(idx) >= 0), "temporal order"
            if n >= L and method != "all":
                assert len(np.unique(idx)) == L, "distinct frames when the sequence is long enough"


def test_consec_is_consecutive_and_covers_all_starts():
    rng = np.random.default_rng(1)
    n, L = 10, 4
    starts = set()
    for _ in range(400):
        idx = sample_clip(n, L, "consec", rng)
        assert np.array_equal(idx, np.arange(idx[0], idx[0] + L))
        starts.add(int(idx[0]))
    assert starts == set(range(n - L + 1))


def test_random_reaches_every_frame_and_is_seeded():
    rng = np.random.default_rng(2)
    seen = np.zeros(30, bool)
    for _ in range(200):
        seen[sample_clip(30, 4, "random", rng)] = True
    assert seen.all()
    a = sample_clip(50, 8, "random", np.random.default_rng(7))
    b = sample_clip(50, 8, "random", 7)  # int seed accepted
    assert np.array_equal(a, b)


def test_evenly_is_deterministic_and_spans_the_sequence():
    for n in LENGTHS:
        for L in (1, 4, 8, 16):
            a = sample_clip(n, L, "evenly")
            assert np.array_equal(a, sample_clip(n, L, "evenly", np.random.default_rng(3)))
            if n >= L:
                gaps = np.diff(a)
                assert gaps.size == 0 or gaps.max() - gaps.min() <= 1, "even spacing"
                # the L segments' middles: first in the first segment, last in the last
                assert a[0] < np.ceil(n / L) and a[-1] >= n - np.ceil(n / L)
    assert sample_clip(9, 1, "evenly").tolist() == [4]  # middle frame
    assert sample_clip(100, 4, "evenly").tolist() == [12, 37, 62, 87]


@pytest.mark.parametrize("method", ["consec", "random", "evenly"])
def test_short_sequences_are_stretched(method):
    rng = np.random.default_rng(4)
    for n, L in [(1, 4), (2, 4), (3, 8), (5, 16)]:
        idx = sample_clip(n, L, method, rng)
        assert len(idx) == L
        assert set(idx.tolist()) == set(range(n)), "every frame kept"
        counts = np.bincount(idx, minlength=n)
        assert counts.max() - counts.min() <= 1, "each frame repeated about L/n times"
        assert np.all(np.diff(idx) >= 0)


def test_sample_clip_bad_arguments():
    with pytest.raises(ValueError, match="method"):
        sample_clip(10, 4, "uniform")
    with pytest.raises(ValueError, match="num_frames"):
        sample_clip(0, 4, "evenly")
    with pytest.raises(ValueError, match="length"):
        sample_clip(10, 0, "evenly")
    with pytest.raises(ValueError, match="rng"):
        sample_clip(10, 4, "random", None)
    assert sample_clip(5, 0, "all").tolist() == list(range(5))  # length unused by 'all'


@pytest.mark.parametrize("M, L", [(1, 4), (4, 4), (8, 4), (3, 8)])
def test_sample_clips_shape_and_overlap(M, L):
    for n in LENGTHS:
        for rng in (None, np.random.default_rng(5)):
            c = sample_clips(n, M, L, rng=rng)
            assert c.shape == (M, L) and c.dtype == np.int64
            assert c.min() >= 0 and c.max() < n
            assert np.all(np.diff(c[:, 0]) >= 0), "clips in temporal order"
            if n >= L:
                assert np.all(np.diff(c, axis=1) == 1), "each clip is consecutive frames"
            if n >= M * L:
                assert np.all(c[1:, 0] >= c[:-1, -1] + 1), "no overlap when T >= M L"
            elif n >= L and M > 1 and rng is None:
                assert np.any(c[1:, 0] <= c[:-1, -1]), "overlap when T < M L"
                assert c[0, 0] == 0 and c[-1, -1] == n - 1, "spread over the whole sequence"


def test_sample_clips_centred_and_jitter_reproducible():
    c = sample_clips(100, 4, 4)
    assert c[:, 0].tolist() == [10, 35, 60, 85]  # centred in 4 segments of 25 frames
    assert np.array_equal(sample_clips(100, 4, 4), c)
    a = sample_clips(100, 4, 4, rng=np.random.default_rng(9))
    b = sample_clips(100, 4, 4, rng=9)
    assert np.array_equal(a, b)
    starts = np.array([sample_clips(100, 4, 4, rng=s)[:, 0] for s in range(200)])
    assert len({tuple(s) for s in starts}) > 1, "jitter varies with the seed"
    seg = np.arange(4) * 25
    assert np.all(starts >= seg) and np.all(starts + 4 <= seg + 25), "jitter stays in the segment"
    assert sample_clips(3, 2, 4).tolist() == [sample_clip(3, 4, "evenly").tolist()] * 2


def test_pk_batch():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    for _ in range(50):
        b = pk_batch(pids, P=4, K=3, rng=rng)
        assert b.shape == (12,) and b.dtype == np.int64
        per = pids[b].reshape(4, 3)
        assert np.all(per == per[:, :1]), "identity-major groups of K"
        assert len(set(per[:, 0].tolist())) == 4, "P distinct identities"
        for row in b.reshape(4, 3):
            if np.sum(pids == pids[row[0]]) >= 3:
                assert len(set(row.tolist())) == 3, "no repeats when the identity has >= K items"
    # an identity with a single item is repeated K times
    small = np.array([5, 5, 7])
    single = pk_batch(small, P=2, K=3, rng=1)
    assert sorted(small[single].tolist()) == [5, 5, 5, 7, 7, 7]
    assert single[small[single] == 7].tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="distinct identities"):
        pk_batch([1, 1, 2], P=3, K=2, rng=rng)
    assert np.array_equal(pk_batch(pids, 4, 3, 11), pk_batch(pids, 4, 3, np.random.default_rng(11)))


def test_pk_sampler_epochs():
    pids = np.repeat(np.arange(20) * 3 + 1, 5)  # non-contiguous pids
    s = PKSampler(pids, P=4, K=2, seed=3)
    assert len(s) == 5
    e0 = list(s)
    e1 = list(s)
    assert len(e0) == 5 and all(b.shape == (8,) for b in e0)
    ids0 = np.concatenate([pids[b].reshape(4, 2)[:, 0] for b in e0])
    assert sorted(ids0.tolist()) == sorted(set(pids.tolist())), "each identity once per epoch"
    assert not all(np.array_equal(a, b) for a, b in zip(e0, e1)), "epochs differ"
    again = PKSampler(pids, P=4, K=2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(e0, list(again)))
    again.set_epoch(1)
    assert all(np.array_equal(a, b) for a, b in zip(e1, list(again)))
    long = PKSampler(pids, P=4, K=2, seed=0, num_batches=12)
    assert len(list(long)) == 12
    with pytest.raises(ValueError, match="distinct identities"):
        PKSampler([1, 2], P=3, K=1)
