"""Tests for reid_utils.eval.ranking: hand-worked cases, agreement with plain
per-query loops written from the two protocols' definitions, bad input."""

import numpy as np
import pytest
import torch

from benchmarks.references import loop_evaluate
from reid_utils.eval.match_ranks import stable_topk_smallest
from reid_utils.eval.ranking import (
    RankResult,
    cmc_at,
    evaluate_rank,
    evaluate_splits,
    mars_official_gallery,
    summarize_splits,
)

# ----------------------------------------------------------------------------
# straightforward references
# ----------------------------------------------------------------------------


def random_problem(rng, num_q, num_g, num_ids, num_cams=6, ties=False, junk_pids=False):
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(1, num_ids + 1, num_g)
    if junk_pids:
        g_pids[rng.random(num_g) < 0.1] = -1
        g_pids[rng.random(num_g) < 0.1] = 0
    q_cams = rng.integers(0, num_cams, num_q)
    g_cams = rng.integers(0, num_cams, num_g)
    dist = rng.random((num_q, num_g))
    if ties == "exact":
        dist = np.round(dist * 5) / 5  # only 6 distinct values
    elif ties == "float32":  # distinct float64 values that collide once rounded to float32
        dist = 0.5 + np.round(dist * 3) * 1e-12
    return dist, q_pids, g_pids, q_cams, g_cams


# ----------------------------------------------------------------------------
# hand-worked cases
# ----------------------------------------------------------------------------
def test_hand_worked_single_query():
    # gallery (by distance): neg, match other cam, match same cam (junk), match other cam
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    g_pids, g_cams = np.array([7, 1, 1, 1]), np.array([0, 2, 0, 3])
    cmc, mAP = evaluate_rank(dist, [1], g_pids, [0], g_cams, max_rank=3)
    # kept ranking: neg (1), match (2), match (3)
    np.testing.assert_allclose(cmc, [0, 1, 1])
    assert mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    cmc, mAP = evaluate_rank(dist, [1], g_pids, [0], g_cams, max_rank=3, protocol="mars_official")
    # trapezoids: hit 1 at rank 2 (precision before 0/1), hit 2 at rank 3 (before 1/2)
    assert mAP == pytest.approx(((0 + 1 / 2) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    np.testing.assert_allclose(cmc, [0, 1, 1])


def test_ties_are_broken_by_gallery_index():
    # the negative (index 0) and the match (index 1) are at the same distance
    dist = np.array([[0.5, 0.5, 0.9]])
    cmc, mAP = evaluate_rank(dist, [1], [2, 1, 3], [0], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(cmc, [0, 1, 1])
    assert mAP == pytest.approx(0.5)
    # swap the gallery order: now the match comes first
    cmc, mAP = evaluate_rank(dist, [1], [1, 2, 3], [0], [1, 1, 1], max_rank=3)
    np.testing.assert_allclose(cmc, [1, 1, 1])
    assert mAP == pytest.approx(1.0)


def test_ties_between_two_matches_and_a_negative():
    # all three at the same distance: gallery order match, neg, match
    dist = np.array([[0.3, 0.3, 0.3]])
    res = evaluate_rank(dist, [4], [4, 5, 4], [0], [1, 1, 2], max_rank=3, return_details=True)
    assert res.mAP == pytest.approx((1 / 1 + 2 / 3) / 2)
    np.testing.assert_array_equal(res.ranked_indices[0], [0, 1, 2])
    np.testing.assert_array_equal(res.ranked_matches[0], [True, False, True])


def test_query_without_valid_match_is_skipped():
    # query 0: its only match is in its own camera (junk) -> skipped
    # query 1: match at kept rank 1
    dist = np.array([[0.1, 0.5, 0.9], [0.6, 0.2, 0.3]])
    q_pids, q_cams = [1, 2], [0, 0]
    g_pids, g_cams = [1, 2, 3], [0, 1, 1]
    res = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3, return_details=True)
    np.testing.assert_allclose(res.cmc, [1, 1, 1])
    assert res.mAP == pytest.approx(1.0)
    assert np.isnan(res.ap[0]) and res.ap[1] == pytest.approx(1.0)
    np.testing.assert_array_equal(res.valid, [False, True])
    # junk removed from the ranked list of query 0
    np.testing.assert_array_equal(res.ranked_indices[0], [1, 2, -1])


def test_all_matches_junk_raises():
    dist = np.array([[0.1, 0.2]])
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_rank(dist, [1], [1, 2], [0], [0, 1], max_rank=2)


def test_official_junk_and_distractors():
    # gallery: the query itself (same cam -> junk), a pid -1 junk track closer than
    # the match, a distractor (pid 0) which is a negative, the true match
    dist = np.array([[0.0, 0.1, 0.2, 0.3]])
    g_pids, g_cams = [5, -1, 0, 5], [2, 1, 1, 3]
    cmc, mAP = evaluate_rank(dist, [5], g_pids, [2], g_cams, max_rank=2, protocol="mars_official")
    # kept ranking: distractor (1), match (2)
    np.testing.assert_allclose(cmc, [0, 1])
    assert mAP == pytest.approx((0 + 1 / 2) / 2)
    # torchreid keeps the pid -1 track as a negative: match at rank 3
    cmc, mAP = evaluate_rank(dist, [5], g_pids, [2], g_cams, max_rank=3)
    np.testing.assert_allclose(cmc, [0, 0, 1])
    assert mAP == pytest.approx(1 / 3)


def test_official_query_without_match_counts_as_zero():
    dist = np.array([[0.1, 0.2], [0.3, 0.1]])
    with pytest.warns(UserWarning, match="no good match"):
        cmc, mAP = evaluate_rank(dist, [1, 9], [1, 2], [0, 0], [1, 1], max_rank=2, protocol="mars_official")
    np.testing.assert_allclose(cmc, [0.5, 0.5])
    assert mAP == pytest.approx(0.5)


def test_mars_official_gallery_appends_queries():
    rng = np.random.default_rng(3)
    qf, gf = rng.normal(size=(6, 4)), rng.normal(size=(15, 4))
    qg = np.linalg.norm(qf[:, None] - gf[None], axis=-1)
    qq = np.linalg.norm(qf[:, None] - qf[None], axis=-1)
    q_pids, g_pids = rng.integers(1, 4, 6), rng.integers(-1, 4, 15)
    q_cams, g_cams = rng.integers(0, 3, 6), rng.integers(0, 3, 15)
    args = mars_official_gallery(qg, qq, q_pids, g_pids, q_cams, g_cams)
    assert args[0].shape == (6, 21) and args[2].shape == (21,)
    got = evaluate_rank(*args, max_rank=10, protocol="mars_official")
    ref = loop_evaluate(*args, max_rank=10, protocol="mars_official")
    np.testing.assert_allclose(got[0], ref[0])
    assert got[1] == pytest.approx(ref[1])


# ----------------------------------------------------------------------------
# agreement with the loops on random problems
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["torchreid", "mars_official"])
@pytest.mark.parametrize("ties", [False, "exact", "float32"])
def test_matches_loop_on_random_problems(protocol, ties):
    rng = np.random.default_rng(len(str(ties)))
    for _trial in range(3):
        dist, qp, gp, qc, gc = random_problem(
            rng, 40, 120, num_ids=15, ties=ties, junk_pids=protocol == "mars_official"
        )
        ref_cmc, ref_map, ref_ap, ref_orders = loop_evaluate(dist, qp, gp, qc, gc, 20, protocol)
        with _no_warning_check(protocol, ref_ap):
            res = evaluate_rank(dist, qp, gp, qc, gc, max_rank=20, protocol=protocol, return_details=True, chunk_size=7)
        np.testing.assert_allclose(res.cmc, ref_cmc, atol=1e-12)
        assert res.mAP == pytest.approx(ref_map, abs=1e-12)
        np.testing.assert_allclose(res.ap, ref_ap, atol=1e-12)
        for q, order in enumerate(ref_orders):
            top = order[:20]
            np.testing.assert_array_equal(res.ranked_indices[q, : len(top)], top)
            assert (res.ranked_indices[q, len(top) :] == -1).all()
            np.testing.assert_array_equal(res.ranked_matches[q, : len(top)], gp[top] == qp[q])


class _no_warning_check:
    """Context manager: allow the official protocol's warning only when expected."""

    def __init__(self, protocol, ref_ap):
        self.expect = protocol == "mars_official" and bool((ref_ap == 0).any())

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore" if self.expect else "error")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_torch_and_numpy_inputs_agree_and_float32_ok():
    rng = np.random.default_rng(5)
    dist, qp, gp, qc, gc = random_problem(rng, 30, 80, num_ids=10)
    a = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)
    b = evaluate_rank(
        torch.from_numpy(dist),
        torch.from_numpy(qp),
        torch.from_numpy(gp),
        torch.from_numpy(qc),
        torch.from_numpy(gc),
        max_rank=10,
    )
    np.testing.assert_allclose(a[0], b[0])
    assert a[1] == b[1]
    c = evaluate_rank(dist.astype(np.float32), qp, gp, qc, gc, max_rank=10)
    ref = loop_evaluate(dist.astype(np.float32), qp, gp, qc, gc, 10)
    np.testing.assert_allclose(c[0], ref[0])
    assert c[1] == pytest.approx(ref[1])
    assert isinstance(a[0], np.ndarray) and a[0].shape == (10,) and isinstance(a[1], float)


def test_small_gallery_truncates_cmc_with_warning():
    with pytest.warns(UserWarning, match="truncated"):
        cmc, _ = evaluate_rank(np.array([[0.2, 0.1]]), [1], [1, 2], [0], [1, 1], max_rank=50)
    assert cmc.shape == (2,)


def test_details_type():
    res = evaluate_rank(np.array([[0.2, 0.1, 0.3]]), [1], [1, 2, 1], [0], [1, 1, 2], max_rank=2, return_details=True)
    assert isinstance(res, RankResult)
    assert res.ranked_indices.shape == (1, 2) and res.first_match_rank[0] == 2
    assert res.num_matches[0] == 2


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def test_stable_topk_matches_stable_sort():
    g = torch.Generator().manual_seed(0)
    vals = torch.randint(0, 4, (50, 40), generator=g).double()  # many ties
    for k in (1, 5, 39, 40):
        ref = torch.sort(vals, dim=1, stable=True).indices[:, :k]
        assert torch.equal(stable_topk_smallest(vals, k), ref)


def test_summarize_splits_and_cmc_at():
    s = summarize_splits([(np.array([0.5, 1.0]), 0.4), (np.array([0.7, 1.0]), 0.6)])
    np.testing.assert_allclose(s.cmc_mean, [0.6, 1.0])
    np.testing.assert_allclose(s.cmc_std, [0.1, 0.0])
    assert s.mAP_mean == pytest.approx(0.5) and s.mAP_std == pytest.approx(0.1)
    assert s.num_splits == 2
    assert summarize_splits([(np.array([0.5]), 0.4), (np.array([0.7]), 0.6)], ddof=1).mAP_std == pytest.approx(
        np.sqrt(0.02)
    )
    assert cmc_at(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), ranks=(1, 5)) == {"R1": 0.1, "R5": 0.5}
    with pytest.raises(ValueError, match="ranks"):
        cmc_at(np.array([0.1]), ranks=(5,))


def test_evaluate_splits_prid_style():
    rng = np.random.default_rng(9)
    splits = [random_problem(rng, 20, 20, num_ids=20, num_cams=2) for _ in range(3)]
    s = evaluate_splits(splits, max_rank=5)
    per = [loop_evaluate(*sp_, max_rank=5) for sp_ in splits]
    np.testing.assert_allclose(s.cmc_mean, np.mean([p[0] for p in per], axis=0))
    assert s.mAP_std == pytest.approx(np.std([p[1] for p in per]))


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    d = np.random.default_rng(0).random((3, 4))
    qp, gp, qc, gc = [1, 2, 3], [1, 2, 3, 4], [0, 0, 0], [1, 1, 1, 1]
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_rank(d, qp, gp[:3], qc, gc)
    with pytest.raises(ValueError, match="q_camids"):
        evaluate_rank(d, qp, gp, qc[:2], gc)
    with pytest.raises(ValueError, match="distmat.*NaN"):
        bad = d.copy()
        bad[1, 2] = np.nan
        evaluate_rank(bad, qp, gp, qc, gc)
    with pytest.raises(ValueError, match="distmat.*infinite"):
        bad = d.copy()
        bad[0, 0] = np.inf
        evaluate_rank(bad, qp, gp, qc, gc)
    with pytest.raises(ValueError, match="distmat.*gallery is empty"):
        evaluate_rank(np.zeros((3, 0)), qp, [], qc, [])
    with pytest.raises(ValueError, match="distmat.*2-D"):
        evaluate_rank(d[0], qp, gp, qc, gc)
    with pytest.raises(ValueError, match="protocol"):
        evaluate_rank(d, qp, gp, qc, gc, protocol="market")
    with pytest.raises(ValueError, match="max_rank"):
        evaluate_rank(d, qp, gp, qc, gc, max_rank=0)
    with pytest.raises(ValueError, match="q_pids.*integer"):
        evaluate_rank(d, [1.5, 2, 3], gp, qc, gc)
    with pytest.raises(ValueError, match="q_q_dist"):
        mars_official_gallery(d, np.zeros((2, 2)), qp, gp, qc, gc)
    with pytest.raises(ValueError, match="results"):
        summarize_splits([])


# ----------------------------------------------------------------------------
# the ranked-results figure fed by evaluate_rank's details
# ----------------------------------------------------------------------------
def test_plot_ranked_results_borders_follow_matches():
    import matplotlib.pyplot as plt

    from reid_utils.viz import plot_ranked_results

    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    res = evaluate_rank(dist, [1, 2], [1, 2, 3, 1], [0, 0], [1, 1, 1, 1], max_rank=3, return_details=True)
    rng = np.random.default_rng(0)
    frames = [[rng.integers(0, 255, (32, 16, 3), dtype=np.uint8) for _ in range(2)] for _ in range(4)]
    gallery = [[frames[i] for i in row] for row in res.ranked_indices]
    fig = plot_ranked_results([frames[0], frames[1]], gallery, res.ranked_matches, thumb_height=20)
    assert len(fig.axes) == 2 * 4
    green, red = np.array([0, 160, 60]), np.array([210, 30, 30])
    for q in range(2):
        for r in range(3):
            img = fig.axes[q * 4 + 1 + r].images[0].get_array()
            assert img.shape[0] == 20 + 2 * 4
            expected = green if res.ranked_matches[q, r] else red
            np.testing.assert_array_equal(img[0, 0], expected)
    assert fig.axes[1].get_title() == "rank 1"
    plt.close(fig)
    with pytest.raises(ValueError, match="matches"):
        plot_ranked_results([frames[0]], [gallery[0]], np.ones((1, 2), bool))
