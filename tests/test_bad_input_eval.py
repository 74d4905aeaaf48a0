"""Bad and extreme inputs at the evaluation and re-ranking boundaries: integer distances
ranked exactly, re-ranking of very large / very small
distances, and the integer knobs (``chunk_size``, ``max_triples``) validated."""

import numpy as np
import pytest
import torch

from reid_utils.eval.distances import (
    cosine_distance,
    cosine_similarity,
    euclidean_distance,
    pairwise_distance,
    reranking_inputs,
)
from reid_utils.eval.ranking import evaluate_rank, mars_official_gallery
from reid_utils.eval.reranking import re_ranking

BIG = 2**60


# ----------------------------------------------------------------------------
# evaluate_rank / mars_official_gallery: integer distances ranked exactly
# ----------------------------------------------------------------------------
def _three_item_case(dtype):
    """One query; its only true match is the farthest of 3: AP = 1/3."""
    d = np.array([[BIG + 2, BIG, BIG + 1]], dtype=dtype)
    return d, np.array([1]), np.array([1, 2, 3]), np.array([0]), np.array([1, 1, 1])


@pytest.mark.parametrize("dtype", [np.int64, np.uint64], ids=["int64_near_2p60", "uint64_near_2p60"])
def test_integer_distances_beyond_float64_are_ranked_exactly(dtype):
    d, qp, gp, qc, gc = _three_item_case(dtype)
    res = evaluate_rank(d, qp, gp, qc, gc, max_rank=3, return_details=True)
    assert res.mAP == pytest.approx(1 / 3)
    assert res.first_match_rank.tolist() == [3]
    assert res.ranked_indices.tolist() == [[1, 2, 0]]
    cmc, mAP = evaluate_rank(torch.from_numpy(d.astype(np.int64)), qp, gp, qc, gc, max_rank=3)
    assert mAP == pytest.approx(1 / 3) and cmc.tolist() == [0, 0, 1]


def test_integer_distances_uint64_above_int64_range_are_ranked_exactly():
    d = np.array([[2**64 - 1, 2**64 - 3, 2**64 - 2]], dtype=np.uint64)
    _, qp, gp, qc, gc = _three_item_case(np.int64)
    assert evaluate_rank(d, qp, gp, qc, gc, max_rank=3)[1] == pytest.approx(1 / 3)


def test_mars_official_gallery_integer_distances_ranked_exactly():
    qg = np.array([[BIG + 2, BIG, BIG + 1]], dtype=np.int64)
    qq = np.zeros((1, 1), dtype=np.int64)
    args = mars_official_gallery(qg, qq, [1], [1, 2, 3], [0], [1, 1, 1])
    res = evaluate_rank(*args, max_rank=4, protocol="mars_official", return_details=True)
    # kept ranking: items 1, 2, 0 (the query itself, column 3, is junk)
    assert res.first_match_rank.tolist() == [3]
    assert res.mAP == pytest.approx(1 / 6)  # trapezoid: (0 / 2 + 1 / 3) / 2


def test_mars_official_gallery_refuses_big_integers_mixed_with_floats():
    qg = np.array([[0.5, 1.5, 2.5]])
    qq = np.array([[BIG + 1]], dtype=np.int64)
    with pytest.raises(ValueError, match="q_q_dist.*2\\^53"):
        mars_official_gallery(qg, qq, [1], [1, 2, 3], [0], [1, 1, 1])


def test_mars_official_gallery_mixed_float_widths_keep_float64():
    qg = np.array([[0.5, 1.5, 2.5]], dtype=np.float32)
    qq = np.array([[1e39]])  # beyond float32: must not become inf
    dist = mars_official_gallery(qg, qq, [1], [1, 2, 3], [0], [1, 1, 1])[0]
    assert dist.dtype == np.float64 and np.isfinite(dist).all() and dist[0, 3] == 1e39


def test_bfloat16_tensor_distances_are_accepted():
    d, qp, gp, qc, gc = _three_item_case(np.int64)
    t = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.bfloat16)
    assert evaluate_rank(t, qp, gp, qc, gc, max_rank=3)[1] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "bad",
    [np.ones((1, 3), dtype=bool), np.ones((1, 3), dtype=complex), np.array([[1, "a", 2]], dtype=object)],
    ids=["bool", "complex", "object"],
)
def test_evaluate_rank_refuses_non_real_distances(bad):
    _, qp, gp, qc, gc = _three_item_case(np.int64)
    with pytest.raises(ValueError, match="distmat"):
        evaluate_rank(bad, qp, gp, qc, gc, max_rank=3)


# ----------------------------------------------------------------------------
# re_ranking: very large / very small distances
# ----------------------------------------------------------------------------
def _blocks(seed=0, num_q=6, num_g=25, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 8))
    q = centres[rng.integers(0, 5, num_q)] + 0.6 * rng.normal(size=(num_q, 8))
    g = centres[rng.integers(0, 5, num_g)] + 0.6 * rng.normal(size=(num_g, 8))

    def d(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).astype(dtype)

    return d(q, g), d(q, q), d(g, g)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("exponent", [70, 100, -100, -120], ids=["x2p70", "x2p100", "x2m100", "x2m120"])
def test_re_ranking_is_invariant_to_power_of_two_scale(exponent, dtype):
    blocks = _blocks(dtype=dtype)
    ref = re_ranking(*blocks, k1=6, k2=3)
    scale = dtype(2.0**exponent)
    out = re_ranking(*(b * scale for b in blocks), k1=6, k2=3)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize(
    "scale", [1.9e19, 1e30, 1e300, 1e-30, 1e-200], ids=["1.9e19", "1e30", "1e300", "1e-30", "1e-200"]
)
def test_re_ranking_large_and_tiny_distances(scale):
    blocks = _blocks()
    ref = re_ranking(*blocks, k1=6, k2=3)
    out = re_ranking(*(b * scale for b in blocks), k1=6, k2=3)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_re_ranking_refuses_a_range_float32_cannot_normalise():
    qg, qq, gg = (np.full_like(b, 1e-30) for b in _blocks())
    gg[0, 1] = gg[1, 0] = 1e20  # one pair 1e50 times farther than every distance of query 0
    with pytest.raises(ValueError, match="range"):
        re_ranking(qg, qq, gg, k1=6, k2=3)


def test_re_ranking_all_zero_item_still_reported_as_zero():
    qg, qq, gg = _blocks()
    qq[0, :] = qq[:, 0] = 0
    qg[0, :] = 0
    with pytest.raises(ValueError, match="is zero"):
        re_ranking(qg, qq, gg, k1=6, k2=3)


def test_re_ranking_bfloat16_tensors_are_accepted():
    blocks = [torch.from_numpy(b).to(torch.bfloat16) for b in _blocks()]
    ref = re_ranking(*(b.float() for b in blocks), k1=6, k2=3)
    np.testing.assert_array_equal(re_ranking(*blocks, k1=6, k2=3), ref)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"chunk_size": 0}, "chunk_size"),
        ({"chunk_size": -4}, "chunk_size"),
        ({"chunk_size": 2.5}, "chunk_size"),
        ({"chunk_size": True}, "chunk_size"),
        ({"max_triples": 0}, "max_triples"),
        ({"max_triples": -1}, "max_triples"),
        ({"max_triples": 1e6}, "max_triples"),
    ],
    ids=["chunk0", "chunk_neg", "chunk_float", "chunk_bool", "triples0", "triples_neg", "triples_float"],
)
def test_re_ranking_integer_knobs_validated(kwargs, name):
    with pytest.raises(ValueError, match=name):
        re_ranking(*_blocks(), **kwargs)


# ----------------------------------------------------------------------------
# distance helpers: chunk_size and input dtype
# ----------------------------------------------------------------------------
DIST_FUNCS = {
    "euclidean_distance": euclidean_distance,
    "cosine_similarity": cosine_similarity,
    "cosine_distance": cosine_distance,
    "pairwise_distance": pairwise_distance,
    "reranking_inputs": reranking_inputs,
}


@pytest.mark.parametrize("chunk", [0, -3, 2.5, True, "8"], ids=["zero", "negative", "float", "bool", "str"])
@pytest.mark.parametrize("func", list(DIST_FUNCS), ids=list(DIST_FUNCS))
def test_distance_helpers_validate_chunk_size(func, chunk):
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        DIST_FUNCS[func](x, x, chunk_size=chunk)


def test_distance_helpers_refuse_complex_features():
    x = np.ones((4, 3), dtype=complex)
    with pytest.raises(ValueError, match="x: .*complex"):
        euclidean_distance(x)
