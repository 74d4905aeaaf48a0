"""Tests for reid_utils.eval.distances against direct formulas."""

import numpy as np
import pytest
import torch

from reid_utils.eval.distances import (
    cosine_distance,
    cosine_similarity,
    euclidean_distance,
    pairwise_distance,
    reranking_inputs,
    similarity_to_distance,
)


def direct_euclidean(x, y):
    return np.sqrt(((x[..., :, None, :] - y[..., None, :, :]) ** 2).sum(-1))


def direct_cosine(x, y):
    xn = x / np.linalg.norm(x, axis=-1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return 1 - xn @ np.swapaxes(yn, -1, -2)


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(13, 6)), rng.normal(size=(9, 6))


def test_euclidean_matches_direct_formula_with_chunks(feats):
    x, y = feats
    np.testing.assert_allclose(euclidean_distance(x, y, chunk_size=4), direct_euclidean(x, y), rtol=1e-10)
    np.testing.assert_allclose(euclidean_distance(x, y, squared=True), direct_euclidean(x, y) ** 2, rtol=1e-10)


def test_self_distance_has_exact_zero_diagonal_and_is_symmetric():
    x = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32) * 100
    d = euclidean_distance(x, chunk_size=6)
    assert d.dtype == np.float32
    assert (np.diag(d) == 0).all() and (d >= 0).all()
    np.testing.assert_allclose(d, d.T, rtol=1e-4)


def test_cosine(feats):
    x, y = feats
    np.testing.assert_allclose(cosine_distance(x, y), direct_cosine(x, y), atol=1e-12)
    s = cosine_similarity(x, y)
    assert s.max() <= 1 and s.min() >= -1
    # for unit vectors cosine distance is half the squared Euclidean distance
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine_distance(xn, yn), euclidean_distance(xn, yn, squared=True) / 2, atol=1e-12)


def test_batched_inputs():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3, 7, 4)), rng.normal(size=(3, 5, 4))
    np.testing.assert_allclose(euclidean_distance(x, y, chunk_size=3), direct_euclidean(x, y), rtol=1e-10)
    np.testing.assert_allclose(cosine_distance(x, y, chunk_size=2), direct_cosine(x, y), atol=1e-12)
    d = euclidean_distance(x)
    assert d.shape == (3, 7, 7) and (np.diagonal(d, axis1=1, axis2=2) == 0).all()


def test_type_follows_input(feats):
    x, y = feats
    t = euclidean_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert isinstance(t, torch.Tensor) and t.shape == (13, 9)
    assert isinstance(euclidean_distance(x, y), np.ndarray)
    np.testing.assert_allclose(t.numpy(), euclidean_distance(x, y))


def test_pairwise_and_reranking_inputs(feats):
    x, y = feats
    for m in ("euclidean", "sqeuclidean", "cosine"):
        assert pairwise_distance(x, y, m).shape == (13, 9)
    qg, qq, gg = reranking_inputs(x, y)
    assert qg.shape == (13, 9) and qq.shape == (13, 13) and gg.shape == (9, 9)
    np.testing.assert_allclose(similarity_to_distance(np.array([0.2, 0.9])), [0.8, 0.1])


def test_bad_input(feats):
    x, y = feats
    with pytest.raises(ValueError, match="y: feature dimension"):
        euclidean_distance(x, y[:, :4])
    with pytest.raises(ValueError, match="x: expected shape"):
        euclidean_distance(x[0], y)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x: contains NaN"):
        euclidean_distance(bad, y)
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(x, y, "manhattan")
    with pytest.raises(ValueError, match="y: batch size"):
        euclidean_distance(np.zeros((2, 3, 4)), np.zeros((3, 3, 4)))
