"""Tests for reid_utils.eval.auc (rank-based ROC AUC and its cluster bootstrap)."""

import numpy as np
import pytest

from reid_utils.eval.auc import cluster_auc_parts, cluster_bootstrap_auc, roc_auc, weighted_cluster_auc


def brute_auc(s, lab):
    s, lab = np.asarray(s, float), np.asarray(lab, bool)
    p, n = s[lab][:, None], s[~lab][None, :]
    return float(((p > n) + 0.5 * (p == n)).mean())


def _data(N, C, seed, decimals=None, effect=0.0):
    rng = np.random.default_rng(seed)
    cl = rng.integers(0, C, N)
    lab = rng.random(N) < 0.3
    s = rng.normal(size=N) + effect * lab + 0.5 * rng.normal(size=C)[cl]
    if decimals is not None:
        s = np.round(s, decimals)
    return s, lab, cl


@pytest.mark.parametrize("seed,decimals", [(0, None), (1, 1), (2, 0), (3, 3)])
def test_roc_auc_equals_brute_force_pairwise_count(seed, decimals):
    s, lab, _ = _data(300, 5, seed, decimals, effect=0.7)
    assert roc_auc(s, lab) == pytest.approx(brute_auc(s, lab), abs=1e-12)


def test_roc_auc_extremes_and_ties():
    assert roc_auc([3, 4, 1, 2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert roc_auc([5, 5, 5, 5], [1, 0, 1, 0]) == 0.5


@pytest.mark.parametrize("decimals", [None, 1, 3])  # continuous; few distinct values (table path); ties, many values
def test_cluster_decomposition_matches_auc_and_explicit_resampling(decimals):
    s, lab, cl = _data(1500, 12, 4, decimals, effect=0.5)
    parts = cluster_auc_parts(s, lab, cl)
    assert parts["K"].sum() / (lab.sum() * (~lab).sum()) == pytest.approx(roc_auc(s, lab), abs=1e-12)
    rng = np.random.default_rng(7)
    for _ in range(3):
        w = rng.integers(0, 3, len(parts["ids"]))
        w[0] = max(w[0], 1)
        idx = np.concatenate([np.flatnonzero(cl == parts["ids"][c]) for c in range(len(w)) for _ in range(w[c])])
        assert weighted_cluster_auc(parts, w) == pytest.approx(roc_auc(s[idx], lab[idx]), abs=1e-12)


def test_bootstrap_interval_contains_estimate_and_shrinks_with_more_clusters():
    widths = []
    for C in (8, 200):
        rng = np.random.default_rng(11)
        cl = np.repeat(np.arange(C), 40)
        lab = rng.random(len(cl)) < 0.4
        s = rng.normal(size=len(cl)) + 0.6 * lab + rng.normal(size=C)[cl]  # cluster random effect
        r = cluster_bootstrap_auc(s, lab, cl, num_boot=400, seed=0)
        assert r["lo"] <= r["auc"] <= r["hi"]
        assert r["auc"] == pytest.approx(roc_auc(s, lab))
        assert r["clusters"] == C and r["boot_valid"] == 400
        widths.append(r["hi"] - r["lo"])
    assert widths[1] < 0.5 * widths[0]


def test_bootstrap_without_positives_is_nan_not_an_error():
    r = cluster_bootstrap_auc(np.arange(6.0), np.zeros(6, bool), np.array([0, 0, 1, 1, 2, 2]), num_boot=10)
    assert np.isnan(r["auc"]) and r["n_pos"] == 0 and r["boot_valid"] == 0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: roc_auc([1.0, 2.0], [1, 0, 1]), "labels"),
        (lambda: roc_auc([1.0, np.nan], [1, 0]), "finite"),
        (lambda: roc_auc([1.0, 2.0], [2, 0]), "0/1"),
        (lambda: roc_auc([1.0, 2.0], [1, 1]), "positive and one negative"),
        (lambda: cluster_auc_parts([1.0, 2.0], [1, 0], [0.5, 1.0]), "clusters"),
        (lambda: cluster_bootstrap_auc([1.0, 2.0], [1, 0], [0, 1], num_boot=0), "num_boot"),
        (lambda: cluster_bootstrap_auc([1.0, 2.0], [1, 0], [0, 1], level=1.5), "level"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
