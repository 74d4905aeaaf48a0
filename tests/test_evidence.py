"""Tests of the evidence machinery: the validation split, intervals in the sweep rows, t chosen
on validation, the training-matters controls and the seed summaries."""

import numpy as np
import pandas as pd
import pytest
import torch

from reid_utils.data.tracklets import DatasetError, Tracklet, VideoDataset
from reid_utils.data.validation import holdout_validation, validation_ids
from reid_utils.experiments import aggregator_controls as ctl
from reid_utils.experiments import corruption_sweep as CS
from reid_utils.experiments import sweep_tables as T
from reid_utils.experiments.aggregators import Method, get_aggregator
from reid_utils.experiments.clip_banks import ClipBanks
from tests.test_experiments_agg import _bank, _banks, _cfg


def _dataset(num_ids=8, cams=3):
    tracks = [Tracklet([f"/x/{p}_{c}.jpg"], p, c) for p in range(1, num_ids + 1) for c in range(cams if p % 4 else 1)]
    return VideoDataset("toy", "/x", tracks, [], [])


def test_validation_holds_identities_out_of_training():
    ds = _dataset()
    train, val = holdout_validation(ds, 3, seed=0)
    held = set(validation_ids([t.pid for t in ds.train], 3, 0).tolist())
    assert len(held) == 3
    assert held.isdisjoint({t.pid for t in train.train})
    assert {t.pid for t in val.gallery} == held and val.train == []
    assert len(train.train) + len(val.gallery) == len(ds.train)
    # queries: every held-out tracklet of an identity seen in two or more cameras
    multi = {p for p in held if len({t.camid for t in val.gallery if t.pid == p}) >= 2}
    assert {t.pid for t in val.query} == multi
    assert train.num_train_pids == ds.num_train_pids - 3
    assert holdout_validation(ds, 3, seed=0)[1].gallery == val.gallery  # deterministic
    with pytest.raises(DatasetError, match="val_ids=7"):
        holdout_validation(ds, 7)


def _val_banks(cfg):
    clean, bad = _banks()
    clean["val_query"], clean["val_gallery"] = _bank(3, 1, 5, "vq", cams=1), _bank(3, 2, 6, "vg")
    clean["val_gallery"].camids[:] = 1
    bad["val_query"], bad["val_gallery"] = (
        _bank(3, 1, 15, "vq-bad", corrupted=True),
        _bank(3, 2, 16, "vg-bad", corrupted=True),
    )
    return ClipBanks(cfg, clean, bad)


def test_sweep_rows_carry_intervals_and_validation(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path)
    banks = _val_banks(cfg)
    sweep = CS.run_sweep(banks, progress=False)
    for rows in (sweep.rows, sweep.val_rows):
        assert (rows["mAP_lo"] <= rows["mAP"] + 1e-12).all() and (rows["mAP"] <= rows["mAP_hi"] + 1e-12).all()
        assert (rows["rank1_lo"] <= rows["rank1_hi"]).all()
    assert len(sweep.rows) == len(sweep.val_rows)
    lv = sweep.levels[0]
    pq = lv.per_query["test"]["per_query"]
    assert pq["learned"]["mAP"].mean() == pytest.approx(float(lv.rows.set_index("method").loc["learned", "mAP"]))
    ch = T.chosen_t(sweep.rows, sweep.val_rows)
    assert set(ch.index.get_level_values("method")) == {"topt-e", "topt-te"}
    for (mc, method), r in ch.iterrows():
        test = sweep.rows[(sweep.rows.Mc_max == mc) & (sweep.rows.method == method)].set_index("t")["mAP"]
        val = sweep.val_rows[(sweep.val_rows.Mc_max == mc) & (sweep.val_rows.method == method)].set_index("t")["mAP"]
        assert r["t_val"] == val.idxmax() and r["t_test"] == test.idxmax()
        assert r["mAP_val_t"] == pytest.approx(100 * test[r["t_val"]]) and r["mAP_test_t"] >= r["mAP_val_t"] - 1e-9


def test_controls_are_scored_on_the_same_queries(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path)
    banks = _val_banks(cfg)
    learned = get_aggregator(banks, Method("learned"), 0, progress=False)
    sims = ctl.control_similarities(banks, learned, 0)
    assert list(sims) == list(ctl.CONTROLS)
    assert torch.equal(
        sims["trained"],
        learned.model.similarity_matrix(banks.features("query", 0), banks.features("gallery", 0), progress=False),
    )
    # uniform weights: the mean of the M^2 cosines
    q = torch.nn.functional.normalize(banks.features("query", 0), dim=-1)
    g = torch.nn.functional.normalize(banks.features("gallery", 0), dim=-1)
    uni = torch.einsum("qid,gjd->qg", q, g) / (q.shape[1] * g.shape[1])
    assert torch.allclose(sims["uniform"], uni, atol=1e-5)
    table = ctl.control_table(banks, sims, n_boot=200)
    assert table.loc["trained", "mAP"] >= 0 and np.isnan(table.loc["trained"].get("d_mAP", np.nan))
    for c in ("untrained", "uniform", "shuffled order"):
        r = table.loc[c]
        assert r["d_mAP"] == pytest.approx(r["mAP"] - table.loc["trained", "mAP"])
        assert r["d_mAP_lo"] <= r["d_mAP"] + 1e-9 <= r["d_mAP_hi"] + 2e-9
        assert r["differs"] == bool(r["d_mAP_lo"] > 0 or r["d_mAP_hi"] < 0)


def test_shuffled_order_is_a_permutation_of_the_visits(tmp_path):
    cfg = _cfg(tmp_path)
    banks = _val_banks(cfg)
    m = get_aggregator(banks, Method("learned"), 0, progress=False).model
    q, g = banks.features("query", 0), banks.features("gallery", 0)
    T2 = q.shape[1] * g.shape[1]
    same = m.similarity_matrix(q, g, progress=False, order=list(range(T2)))
    assert torch.allclose(same, m.similarity_matrix(q, g, progress=False), atol=1e-6)
    perm = [int(t) for t in np.random.default_rng(0).permutation(T2)]
    shuffled = m.similarity_matrix(q, g, progress=False, order=perm)
    # the reference recurrence visiting the same permuted pairs: permute the clips of a
    # one-clip-per-step layout (M_q = 1, M_g = T) so that row-major order is `perm`
    Mg = g.shape[1]
    qi = torch.tensor([p // Mg for p in perm])
    gj = torch.tensor([p % Mg for p in perm])
    fq = q[:, qi].repeat_interleave(g.shape[0], dim=0)
    fg = g[:, gj].repeat(q.shape[0], 1, 1)
    m.eval()
    with torch.no_grad():
        c = torch.nn.functional.normalize(fq, dim=-1) * torch.nn.functional.normalize(fg, dim=-1)
        ref = _reference_pairs(m, c).view(q.shape[0], g.shape[0])
    assert torch.allclose(shuffled, ref, atol=1e-5)
    assert not torch.allclose(shuffled, same, atol=1e-6)
    with pytest.raises(ValueError, match="permutation"):
        m.similarity_matrix(q, g, progress=False, order=[0] * T2)


def _reference_pairs(m, c):
    """Eqs. 1-2 over the clip-pair products c (B, T, D) in the given order (eval mode)."""
    B, T, D = c.shape
    r, A = c.new_zeros(B, D), c.new_zeros(B)
    for t in range(T):
        alpha = m.importance_net(r - c[:, t]).reshape(B)
        A = A + alpha
        r = r + (alpha / A)[:, None] * (c[:, t] - r)
    return r.sum(-1)


def test_seed_summary_is_mean_and_sd_over_seeds():
    from reid_utils.eval.bootstrap import seed_summary

    rows = pd.DataFrame(
        {"method": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2, "mAP": [10.0, 20.0, 30.0, 50.0, 50.0, 50.0]}
    )
    s = seed_summary(rows, ["method"]).set_index("method")
    assert s.loc["a", "mean"] == pytest.approx(20.0) and s.loc["a", "sd"] == pytest.approx(10.0)
    assert s.loc["b", "sd"] == 0 and s.loc["a", "n"] == 3 and s.loc["a", "min"] == pytest.approx(10.0)
    one = seed_summary(rows[rows.seed == 0], ["method"])
    assert one["sd"].isna().all()


def _seed_rows(tmp_path, seeds=(0, 1)):
    torch.set_num_threads(1)
    rows, vals, sweeps = [], [], {}
    for s in seeds:
        cfg = _cfg(tmp_path, iterations=3)
        cfg = cfg.__class__(**{**cfg.__dict__, "seed": s})
        sw = CS.run_sweep(_val_banks(cfg), progress=False)
        rows.append(sw.rows.assign(seed=s))
        vals.append(sw.val_rows.assign(seed=s))
        sweeps[s] = sw
    return pd.concat(rows, ignore_index=True), pd.concat(vals, ignore_index=True), sweeps


def test_table2_over_seeds_and_paired_gaps(tmp_path):
    rows, vals, sweeps = _seed_rows(tmp_path)
    tab = T.table2_seeds(rows, vals)
    levels = sorted(rows["Mc_max"].unique())
    assert list(tab["mean"].columns) == levels and (tab["n"] == 2).all().all()
    learned = rows[rows.method == "learned"].groupby("Mc_max")["mAP"]
    assert np.allclose(tab.loc["learned", "mean"].to_numpy(), 100 * learned.mean().to_numpy())
    assert np.allclose(tab.loc["learned", "sd"].to_numpy(), 100 * learned.std(ddof=1).to_numpy())
    assert {"topt-e t chosen on val", "topt-te best t (test)"} <= set(tab.index)
    level = sweeps[0].levels[max(sweeps[0].levels)]
    gaps = T.level_gaps(level)
    pq = level.per_query["test"]["per_query"]
    for other in ("mean", "topt-te t=20"):
        expected = 100 * (pq["learned"]["mAP"].mean() - pq[other]["mAP"].mean())  # learned minus other
        assert gaps.loc[other, "difference"] == pytest.approx(expected)
    assert (gaps["difference"].abs() > 1e-9).any()  # the sign is tested on a real difference
    assert (gaps["lo"] <= gaps["difference"] + 1e-9).all() and (gaps["difference"] <= gaps["hi"] + 1e-9).all()


def test_collapsed_models_are_marked():
    tab = pd.DataFrame(
        {"v": [1.0, 2.0, 3.0]},
        index=pd.MultiIndex.from_tuples(
            [("topt-e", 50.0), ("topt-te", 50.0), ("learned", np.nan)], names=["method", "t"]
        ),
    )
    out = T.mark_collapsed(tab, ["topt-te t=50", "topt-e"])
    assert list(out.index.get_level_values("method")) == ["topt-e (collapsed)", "topt-te (collapsed)", "learned"]
    assert T.mark_collapsed(tab, []) is tab


def test_topt_neck_is_the_identity_at_initialisation_and_keeps_cosines_spread():
    from reid_utils.models.aggregation import TopTAggregator

    torch.manual_seed(0)
    x = torch.rand(6, 4, 16)
    plain, neck = TopTAggregator(16, 50.0), TopTAggregator(16, 50.0, neck=True)
    assert torch.allclose(
        plain.similarity_matrix(x, x, progress=False), neck.similarity_matrix(x, x, progress=False), atol=1e-5
    )
    # a projection that adds one shared direction squeezes plain cosines towards 1; the neck
    # standardises it away (training mode: batch statistics)
    for m in (plain, neck):
        with torch.no_grad():
            m.proj.bias.fill_(10.0)
        m.train()
    c_plain = plain.pair_cosines(x, x).mean()
    c_neck = neck.pair_cosines(x, x).mean()
    assert c_plain > 0.99 and c_neck < 0.5


def test_feature_rankings_get_intervals_around_the_plain_evaluation():
    from reid_utils.data.tracklets import Tracklet, VideoDataset
    from reid_utils.experiments.i3d_ablations import evaluate_features, evaluate_with_interval

    gen = torch.Generator().manual_seed(0)
    protos = torch.randn(6, 8, generator=gen)
    query = [Tracklet((f"/q{p}.jpg",), p + 1, 0) for p in range(6)]
    gallery = [Tracklet((f"/g{p}_{k}.jpg",), p + 1, 1) for p in range(6) for k in range(3)]
    ds = VideoDataset("toy", "/x", [], query, gallery, protocol="torchreid")
    qf = protos + 0.8 * torch.randn(6, 8, generator=gen)
    gf = protos.repeat_interleave(3, 0) + 0.8 * torch.randn(18, 8, generator=gen)
    r, plain = evaluate_with_interval(qf, gf, ds, n_boot=200), evaluate_features(qf, gf, ds)
    assert r["mAP"] == plain["mAP"] and r["rank1"] == plain["rank1"]
    assert r["mAP_lo"] <= r["mAP"] <= r["mAP_hi"] and r["mAP_lo"] < r["mAP_hi"]
    assert r["rank1_lo"] <= r["rank1"] <= r["rank1_hi"]
