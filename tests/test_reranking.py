"""Tests for reid_utils.eval.reranking against a plain dense reference written from
the algorithm of Zhong et al. (CVPR 2017) as its common implementation runs it."""

import numpy as np
import pytest
import torch

from benchmarks.references import reference_re_ranking
from reid_utils.eval.reranking import re_ranking

# ----------------------------------------------------------------------------
# straightforward dense reference
# ----------------------------------------------------------------------------


def random_features(rng, num_q, num_g, dim=8, num_ids=None):
    """Clustered features so that neighbourhoods are non-trivial."""
    num_ids = num_ids or max(2, (num_q + num_g) // 5)
    centres = rng.normal(size=(num_ids, dim))
    q = centres[rng.integers(0, num_ids, num_q)] + 0.6 * rng.normal(size=(num_q, dim))
    g = centres[rng.integers(0, num_ids, num_g)] + 0.6 * rng.normal(size=(num_g, dim))
    return q, g


def distances(q, g):
    def d(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    return d(q, g), d(q, q), d(g, g)


# ----------------------------------------------------------------------------
# agreement with the reference
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seed,num_q,num_g,k1,k2,lam",
    [
        (0, 12, 50, 20, 6, 0.3),
        (1, 20, 35, 5, 3, 0.5),
        (2, 7, 60, 8, 1, 0.0),
        (3, 5, 9, 20, 6, 0.3),  # k1 + 1 > N: every item is a neighbour
    ],
)
def test_matches_reference(seed, num_q, num_g, k1, k2, lam):
    rng = np.random.default_rng(seed)
    qg, qq, gg = distances(*random_features(rng, num_q, num_g))
    ref = reference_re_ranking(qg, qq, gg, k1, k2, lam)
    got = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam, chunk_size=7, max_triples=500)
    assert got.dtype == np.float32 and got.shape == (num_q, num_g)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_matches_reference_float32_torch_inputs_and_asymmetric_blocks():
    rng = np.random.default_rng(4)
    qg, qq, gg = distances(*random_features(rng, 10, 30))
    qq = qq + 0.05 * rng.random(qq.shape)  # non-symmetric blocks: the transpose matters
    gg = gg + 0.05 * rng.random(gg.shape)
    qg, qq, gg = (x.astype(np.float32) for x in (qg, qq, gg))
    ref = reference_re_ranking(qg, qq, gg)
    got = re_ranking(torch.from_numpy(qg), torch.from_numpy(qq), torch.from_numpy(gg))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_exact_ties_follow_stable_order():
    # quantised distances: many exact ties, resolved by index on both sides
    rng = np.random.default_rng(5)
    qg, qq, gg = (np.round(x * 2) / 2 for x in distances(*random_features(rng, 8, 25)))
    for x in (qq, gg):
        np.fill_diagonal(x, 0)
    ref = reference_re_ranking(qg, qq, gg, k1=6, k2=3)
    got = re_ranking(qg, qq, gg, k1=6, k2=3, chunk_size=5)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------
def test_lambda_one_returns_squared_column_normalised_distances():
    rng = np.random.default_rng(6)
    qg, qq, gg = distances(*random_features(rng, 9, 21))
    got = re_ranking(qg, qq, gg, lambda_value=1.0)
    # column i of the full matrix is [q_q[:, i]; q_g[i, :]] for a query i
    colmax = np.maximum((qq**2).max(axis=0), (qg**2).max(axis=1))
    np.testing.assert_allclose(got, (qg**2) / colmax[:, None], rtol=1e-6)


def test_gallery_permutation_permutes_columns():
    rng = np.random.default_rng(7)
    qg, qq, gg = distances(*random_features(rng, 10, 40))
    perm = rng.permutation(40)
    a = re_ranking(qg, qq, gg)
    b = re_ranking(qg[:, perm], qq, gg[np.ix_(perm, perm)])
    np.testing.assert_allclose(b, a[:, perm], rtol=1e-5, atol=1e-6)


def test_reranking_improves_clustered_retrieval():
    # re-ranking should not make nearest-neighbour retrieval of clusters worse
    rng = np.random.default_rng(8)
    num_ids = 10
    centres = rng.normal(size=(num_ids, 8)) * 2
    q_ids, g_ids = np.arange(num_ids), np.repeat(np.arange(num_ids), 6)
    q = centres[q_ids] + rng.normal(size=(num_ids, 8))
    g = centres[g_ids] + rng.normal(size=(len(g_ids), 8))
    qg, qq, gg = distances(q, g)
    rr = re_ranking(qg, qq, gg, k1=6, k2=3)

    def precision_at_5(dist):
        top = np.argsort(dist, axis=1, kind="stable")[:, :5]
        return (g_ids[top] == q_ids[:, None]).mean()

    assert precision_at_5(rr) >= precision_at_5(qg) - 0.05


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    rng = np.random.default_rng(9)
    qg, qq, gg = distances(*random_features(rng, 4, 6))
    with pytest.raises(ValueError, match="q_q_dist"):
        re_ranking(qg, qq[:3, :3], gg)
    with pytest.raises(ValueError, match="g_g_dist"):
        re_ranking(qg, qq, gg[:5])
    with pytest.raises(ValueError, match="q_g_dist.*2-D"):
        re_ranking(qg[0], qq, gg)
    with pytest.raises(ValueError, match="gallery is empty"):
        re_ranking(np.zeros((4, 0)), qq, np.zeros((0, 0)))
    bad = qg.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="q_g_dist.*NaN"):
        re_ranking(bad, qq, gg)
    bad = gg.copy()
    bad[0, 2] = np.inf
    with pytest.raises(ValueError, match="g_g_dist.*infinite"):
        re_ranking(qg, qq, bad)
    with pytest.raises(ValueError, match="q_g_dist.*negative"):
        re_ranking(-qg, qq, gg)
    with pytest.raises(ValueError, match="k1"):
        re_ranking(qg, qq, gg, k1=0)
    with pytest.raises(ValueError, match="k2"):
        re_ranking(qg, qq, gg, k2=2.5)
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(qg, qq, gg, lambda_value=1.5)
    with pytest.raises(ValueError, match="zero"):
        re_ranking(np.zeros((2, 3)), np.zeros((2, 2)), np.ones((3, 3)))
