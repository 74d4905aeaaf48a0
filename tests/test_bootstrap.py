"""Tests for reid_utils.eval.bootstrap: per-query scores agree with evaluate_rank bit for
bit, the paired cluster bootstrap behaves as its definition says (hand-worked and
statistical checks), seed summaries and formatters, bad input."""

import numpy as np
import pandas as pd
import pytest

from benchmarks.references import loop_evaluate
from reid_utils.eval.bootstrap import (
    bootstrap_methods,
    bootstrap_replicates,
    format_interval,
    format_mean_sd,
    paired_differences,
    per_query_scores,
    seed_summary,
)
from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import evaluate_rank


def ranking_problem(seed, num_q=60, num_g=200, num_ids=25, ties=False):
    """Random labels with queries lacking a true match and (official) pid -1/0 items."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = rng.integers(1, num_ids + 1, num_g)
    g_pids[rng.random(num_g) < 0.1] = -1
    g_pids[rng.random(num_g) < 0.1] = 0
    q_pids[:3] = num_ids + 7  # absent from the gallery: no true match
    q_cams, g_cams = rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)
    dist = rng.random((num_q, num_g))
    if ties:
        dist = np.round(dist * 5) / 5
    return dist, q_pids, g_pids, q_cams, g_cams


# ----------------------------------------------------------------------------
# per-query scores under the evaluation conventions
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("protocol", ["torchreid", "mars_official"])
def test_point_estimates_equal_evaluate_rank_bit_for_bit(protocol, ties):
    args = ranking_problem(1, ties=ties)
    with pytest.warns(UserWarning) if protocol == "mars_official" else _no_op():
        cmc, mAP = evaluate_rank(*args, max_rank=10, protocol=protocol)
    with pytest.warns(UserWarning) if protocol == "mars_official" else _no_op():
        qs = per_query_scores(*args, protocol=protocol, ranks=(1, 5))
    # torchreid drops the 3 queries without a match; mars_official keeps them at 0
    assert qs.counted.sum() == (60 if protocol == "mars_official" else 60 - 3 - (~qs.counted[3:]).sum())
    assert np.all(qs.counted[:3] == (protocol == "mars_official"))
    df = bootstrap_methods({"m": qs.values}, qs.pids, n_boot=50)
    point = df.set_index("metric")["point"]
    assert point["mAP"] == mAP and point["rank1"] == cmc[0] and point["rank5"] == cmc[4]


class _no_op:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("protocol", ["torchreid", "mars_official"])
def test_per_query_values_match_a_plain_loop(protocol):
    args = ranking_problem(2)
    with pytest.warns(UserWarning) if protocol == "mars_official" else _no_op():
        qs = per_query_scores(*args, protocol=protocol)
    _, _, ap_loop, kept = loop_evaluate(*args, max_rank=10, protocol=protocol)
    counted = ~np.isnan(ap_loop)
    np.testing.assert_array_equal(qs.counted, counted)
    np.testing.assert_allclose(qs.values["mAP"], ap_loop[counted], rtol=1e-12)
    q_pids, g_pids = args[1], args[2]
    hit = np.array([len(k) > 0 and g_pids[k[0]] == p for k, p in zip(kept, q_pids)])
    np.testing.assert_array_equal(qs.values["rank1"], hit[counted].astype(float))
    np.testing.assert_array_equal(qs.pids, q_pids[counted])


def test_counted_field_leaves_evaluate_rank_unchanged():
    args = ranking_problem(3)
    cmc, mAP = evaluate_rank(*args, max_rank=10)
    res = evaluate_rank(*args, max_rank=10, return_details=True)
    np.testing.assert_array_equal(res.cmc, cmc)
    assert res.mAP == mAP == res.ap[res.counted].mean()
    np.testing.assert_array_equal(res.counted, res.valid)


def test_similarities_through_similarity_to_distance():
    dist, qp, gp, qc, gc = ranking_problem(4)
    sim = 1.0 - dist
    a = per_query_scores(similarity_to_distance(sim), qp, gp, qc, gc)
    b = per_query_scores(dist, qp, gp, qc, gc)
    for m in ("mAP", "rank1"):
        np.testing.assert_array_equal(a.values[m], b.values[m])


# ----------------------------------------------------------------------------
# the bootstrap
# ----------------------------------------------------------------------------
def _toy(seed=0, num_q=300, num_ids=60):
    rng = np.random.default_rng(seed)
    pids = rng.integers(0, num_ids, num_q)
    a = rng.random(num_q)
    return pids, {"a": {"mAP": a, "rank1": (a > 0.5).astype(float)}}


def test_identical_methods_give_a_zero_width_paired_interval():
    pids, pq = _toy()
    pq["b"] = {k: v.copy() for k, v in pq["a"].items()}
    d = paired_differences(pq, pids, reference="a", n_boot=200)
    assert (d[["difference", "lo", "hi"]].to_numpy() == 0).all()
    assert not d["excludes_zero"].any()


def test_better_on_every_query_excludes_zero():
    pids, pq = _toy()
    a = pq["a"]["mAP"]
    pq = {"a": {"mAP": 0.9 * a}, "b": {"mAP": 0.9 * a + 0.01}}
    d = paired_differences(pq, pids, n_boot=500).iloc[0]
    assert (d.method, d.versus) == ("a", "b")
    assert d.hi < 0 and d.excludes_zero
    # the unpaired intervals overlap: only the pairing shows the difference
    df = bootstrap_methods(pq, pids, n_boot=500).set_index("method")
    assert df.loc["b", "lo"] < df.loc["a", "hi"]


def test_two_identities_by_hand():
    # identity 0: two queries worth 1; identity 1: one query worth 0. A resample draws
    # 2 identities: {0, 0} (p 1/4) -> mean 1, {0, 1} (p 1/2) -> 2/3, {1, 1} (p 1/4) -> 0.
    pids, v = np.array([0, 0, 1]), {"m": {"x": np.array([1.0, 1.0, 0.0])}}
    B = 4000
    _, reps = bootstrap_replicates(v, pids, n_boot=B, seed=5)
    r = reps[("m", "x")].to_numpy()
    for value, p in [(1.0, 0.25), (2 / 3, 0.5), (0.0, 0.25)]:
        freq = np.isclose(r, value).mean()
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / B), (value, freq)
    # quantiles 0.3 / 0.7 fall inside the 2/3 block, 0.05 / 0.95 inside the end blocks
    narrow = bootstrap_methods(v, pids, n_boot=B, seed=5, level=0.4).iloc[0]
    assert narrow.lo == pytest.approx(2 / 3) and narrow.hi == pytest.approx(2 / 3)
    wide = bootstrap_methods(v, pids, n_boot=B, seed=5, level=0.9).iloc[0]
    assert (wide.lo, wide.hi) == (0.0, 1.0) and wide.point == pytest.approx(2 / 3)


def test_identities_not_queries_are_resampled():
    # every query repeated: same identities, same resampled means, same interval
    pids, pq = _toy()
    twice = {"a": {k: np.repeat(v, 2) for k, v in pq["a"].items()}}
    one = bootstrap_methods(pq, pids, n_boot=300, seed=1)
    two = bootstrap_methods(twice, np.repeat(pids, 2), n_boot=300, seed=1)
    np.testing.assert_allclose(two[["point", "lo", "hi"]], one[["point", "lo", "hi"]], rtol=1e-12)


def test_coverage_with_correlated_queries():
    """Data with a true mean 0 and a strong identity effect: the identity bootstrap covers
    at about the nominal rate; treating queries as independent does not."""
    K, per_id, S, B = 100, 4, 200, 300
    rng = np.random.default_rng(7)
    pids = np.repeat(np.arange(K), per_id)
    hits = {"identity": 0, "query": 0}
    for s in range(S):
        v = {"m": {"x": np.repeat(rng.normal(0, 1, K), per_id) + rng.normal(0, 0.5, K * per_id)}}
        for kind, p in (("identity", pids), ("query", np.arange(K * per_id))):
            r = bootstrap_methods(v, p, n_boot=B, seed=s).iloc[0]
            hits[kind] += r.lo <= 0 <= r.hi
    sd = np.sqrt(0.95 * 0.05 / S)  # binomial sd of an observed coverage at the nominal 95 %
    assert abs(hits["identity"] / S - 0.95) < 3 * sd
    # intra-identity correlation 0.8, 4 queries: variance understated 3.4x (coverage ~71 %)
    assert hits["query"] / S < 0.95 - 3 * sd


def test_same_seed_same_intervals_and_pairs_share_resamples():
    pids, pq = _toy()
    pq["b"] = {k: np.clip(v + 0.05 * np.sin(np.arange(len(v))), 0, 1) for k, v in pq["a"].items()}
    pd.testing.assert_frame_equal(bootstrap_methods(pq, pids, seed=3), bootstrap_methods(pq, pids, seed=3))
    assert not bootstrap_methods(pq, pids, seed=3).equals(bootstrap_methods(pq, pids, seed=4))
    d = paired_differences(pq, pids, reference="a", seed=3, n_boot=300)
    point, reps = bootstrap_replicates(pq, pids, n_boot=300, seed=3)
    diff = reps[("b", "mAP")] - reps[("a", "mAP")]
    row = d.set_index("metric").loc["mAP"]
    assert row.difference == point[("b", "mAP")] - point[("a", "mAP")]
    np.testing.assert_allclose([row.lo, row.hi], np.quantile(diff, [0.025, 0.975]), rtol=1e-12)
    both = paired_differences(pq, pids, seed=3, n_boot=300).set_index("metric").loc["mAP"]
    assert both.lo == pytest.approx(-row.hi) and both.hi == pytest.approx(-row.lo)  # a - b


# ----------------------------------------------------------------------------
# seeds and formatting
# ----------------------------------------------------------------------------
def test_seed_summary():
    df = pd.DataFrame(
        {
            "method": ["learned"] * 3 + ["mean"],
            "level": [0, 0, 0, 0],
            "seed": [0, 1, 2, 0],
            "mAP": [30.0, 33.0, 31.5, 29.3],
        }
    )
    s = seed_summary(df, by=["method", "level"]).set_index("method")
    assert s.loc["learned", "mean"] == pytest.approx(31.5)
    assert s.loc["learned", "sd"] == pytest.approx(np.std([30.0, 33.0, 31.5], ddof=1))
    assert (s.loc["learned", "n"], s.loc["learned", "min"], s.loc["learned", "max"]) == (3, 30.0, 33.0)
    assert np.isnan(s.loc["mean", "sd"]) and s.loc["mean", "n"] == 1
    overall = seed_summary(df, by=[])
    assert len(overall) == 1 and overall["n"].iloc[0] == 4


def test_formatters():
    assert format_interval(31.44, 27.91, 35.0) == "31.4 [27.9, 35.0]"
    assert format_interval(0.3144, 0.2791, 0.35, digits=3) == "0.314 [0.279, 0.350]"
    assert format_mean_sd(31.44, 2.06) == "31.4 ± 2.1"
    assert format_mean_sd(31.44, float("nan")) == "31.4 ± n/a"


# ----------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------
def test_bad_input_raises_clear_errors():
    pids, pq = _toy()
    with pytest.raises(ValueError, match=r"per_query\['a'\]\['mAP'\]: expected shape \(299,\)"):
        bootstrap_methods(pq, pids[:-1])
    nan = {"a": {"mAP": np.where(np.arange(len(pids)) == 4, np.nan, 0.5)}}
    with pytest.raises(ValueError, match=r"per_query\['a'\]\['mAP'\]: contains NaN"):
        bootstrap_methods(nan, pids)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="n_boot"):
            bootstrap_methods(pq, pids, n_boot=bad)
    for bad in (0, 1, 1.5, -0.1, 95):
        with pytest.raises(ValueError, match="level"):
            bootstrap_methods(pq, pids, level=bad)
        with pytest.raises(ValueError, match="level"):
            paired_differences({**pq, "b": pq["a"]}, pids, level=bad)
    with pytest.raises(ValueError, match="seed"):
        bootstrap_methods(pq, pids, seed=-1)
    with pytest.raises(ValueError, match="query_pids"):
        bootstrap_methods(pq, pids[:, None])
    with pytest.raises(ValueError, match="per_query: expected a non-empty"):
        bootstrap_methods({}, pids)
    with pytest.raises(ValueError, match=r"per_query\['b'\]: metrics \['mAP'\] differ"):
        bootstrap_methods({**pq, "b": {"mAP": pq["a"]["mAP"]}}, pids)
    with pytest.raises(ValueError, match="reference: 'zzz'"):
        paired_differences({**pq, "b": pq["a"]}, pids, reference="zzz")
    with pytest.raises(ValueError, match="at least two methods"):
        paired_differences(pq, pids)
    with pytest.raises(ValueError, match="ranks"):
        per_query_scores(*ranking_problem(1)[:5], ranks=(0,))
    with pytest.raises(ValueError, match="missing columns"):
        seed_summary(pd.DataFrame({"mAP": [1.0]}), by="method")
    with pytest.raises(ValueError, match="value: column 'mAP'"):
        seed_summary(pd.DataFrame({"m": ["a", "a"], "mAP": [1.0, np.nan]}), by="m")
