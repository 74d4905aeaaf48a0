"""Tests of the aggregation experiments (notebooks 04-05: Table 2 sweep, Sec. 4.4):
``reid_utils.experiments.{clip_banks, aggregators, corruption_sweep, sweep_tables, pair_importance}``."""

import numpy as np
import pandas as pd
import pytest
import torch

from reid_utils import paper
from reid_utils.config import get_config
from reid_utils.experiments import aggregators as A
from reid_utils.experiments import clip_banks as CB
from reid_utils.experiments import corruption_sweep as CS
from reid_utils.experiments import pair_importance as PI
from reid_utils.experiments import sweep_tables as T
from reid_utils.experiments.aggregators import Method
from reid_utils.experiments.clip_banks import ClipBanks
from reid_utils.training import aggregator as agg_train
from reid_utils.training.features import FeatureBank

M, D = 4, 12


def _cfg(tmp_path, **agg):
    base = dict(num_clips=M, hidden=8, P=3, K=2, iterations=3, lr=1e-3, max_corrupted=(0, 2), t_percents=(20, 50, 100))
    base.update(agg)
    return get_config("smoke", artifacts_dir=str(tmp_path / "art"), agg=base)


def _bank(num_ids, per_id, seed, tag, cams=2, corrupted=False):
    """Identity prototypes + noise; a 'corrupted' bank is a shared junk direction."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.randn(num_ids, D, generator=torch.Generator().manual_seed(99))
    feats, pids, camids = [], [], []
    for p in range(num_ids):
        for k in range(per_id):
            x = protos[p] + 0.5 * torch.randn(M, D, generator=gen)
            if corrupted:
                x = torch.ones(M, D) + 0.3 * torch.randn(M, D, generator=gen)
            feats.append(x)
            pids.append(p + 1)
            camids.append(k % cams)
    return FeatureBank(
        torch.stack(feats).abs(),
        np.array(pids),
        np.array(camids),
        np.zeros((len(pids), M, 4), np.int64),
        meta={"key": f"{tag}-{seed}"},
    )


def _banks():
    clean = {"train": _bank(5, 3, 0, "tr"), "query": _bank(4, 1, 1, "q", cams=1), "gallery": _bank(4, 3, 2, "g")}
    # queries on camera 0, gallery on cameras 1 (and 0): every query has a cross-camera match
    clean["gallery"].camids[:] = 1
    bad = {
        s: _bank(len(np.unique(b.pids)), len(b) // len(np.unique(b.pids)), 10 + k, s + "-bad", corrupted=True)
        for k, (s, b) in enumerate(clean.items())
    }
    return clean, bad


def _clip_banks(cfg, corrupted=True):
    clean, bad = _banks()
    return ClipBanks(cfg, clean, bad if corrupted else None)


def test_test_plans_are_deterministic_and_bounded(tmp_path):
    cfg = _cfg(tmp_path)
    for mc in range(M + 1):
        for split in ("query", "gallery"):
            a = CB.test_plan(cfg, split, 50, mc)
            b = CB.test_plan(cfg, split, 50, mc)
            assert a.dtype == bool and a.shape == (50, M)
            assert np.array_equal(a, b)
            counts = a.sum(1)
            assert counts.min() >= 0 and counts.max() <= mc
        if mc > 0:  # the two test splits are corrupted independently
            assert not np.array_equal(CB.test_plan(cfg, "query", 50, mc), CB.test_plan(cfg, "gallery", 50, mc))
    with pytest.raises(ValueError, match="split"):
        CB.test_plan(cfg, "val", 5, 1)


def test_level_features_follow_the_plan(tmp_path):
    cfg = _cfg(tmp_path)
    banks = _clip_banks(cfg)
    clean, bad = banks.clean, banks.corrupted
    assert torch.equal(ClipBanks(cfg, clean).features("query", 0), clean["query"].feats)
    x = banks.features("gallery", 3)
    plan = CB.test_plan(cfg, "gallery", len(clean["gallery"]), 3)
    assert np.array_equal(banks.plan("gallery", 3), plan)
    assert torch.equal(x[plan], bad["gallery"].feats[plan])
    assert torch.equal(x[~plan], clean["gallery"].feats[~plan])
    with pytest.raises(ValueError, match="corrupted"):
        ClipBanks(cfg, clean).features("query", 2)


def test_get_clip_banks_extracts_with_the_backbone_key(tmp_path, monkeypatch):
    """Clean banks, then corrupted ones, each keyed by the frozen I3D's key (not by an attribute)."""
    from types import SimpleNamespace

    from reid_utils.training import TrainedModel

    calls = []

    def fake_get_features(cfg, model, tracklets, **kw):
        calls.append((kw["name"], kw["model_key"], kw["frame_transform"] is not None, kw["transform_key"]))
        return tracklets

    monkeypatch.setattr(CB, "get_features", fake_get_features)
    cfg = _cfg(tmp_path)
    ds = SimpleNamespace(train="tr", query="q", gallery="g")
    backbone = TrainedModel(torch.nn.Identity(), "i3d-key")
    banks = CB.get_clip_banks(cfg, backbone, ds, corrupted=True, progress=False)
    assert banks.clean == {"train": "tr", "query": "q", "gallery": "g"} and banks.corrupted == banks.clean
    assert [c[0] for c in calls] == [f"aggfeat-{s}" for s in CB.SPLITS] + [f"aggfeat-{s}-corrupted" for s in CB.SPLITS]
    assert {c[1] for c in calls} == {"i3d-key"}
    assert [c[2] for c in calls] == [False] * 3 + [True] * 3
    assert [c[3] for c in calls] == [None] * 3 + [CB.CORRUPTION_KEY] * 3
    assert CB.get_clip_banks(cfg, backbone, ds, progress=False).corrupted is None


def test_methods_for_config(tmp_path):
    cfg = _cfg(tmp_path, t_percents=(10, 20, 30, 50, 70, 100))
    ms = A.methods_for(cfg)
    assert [m.kind for m in ms][:2] == ["learned", "topt-eval"]
    assert [m.t for m in ms if m.kind == "topt-train-eval"] == [20.0, 50.0, 70.0, 100.0]
    assert [m.t for m in A.methods_for(_cfg(tmp_path, t_percents=(30, 50))) if m.kind == "topt-train-eval"] == [50.0]


def test_sweep_assembles_table2_and_caches(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path)
    banks = _clip_banks(cfg)
    sweep = CS.run_sweep(banks, progress=False)
    res = sweep.rows
    n_t, n_te = len(cfg.agg.t_percents), len(A.train_eval_percents(cfg))
    assert len(res) == len(cfg.agg.max_corrupted) * (1 + n_t + n_te + 1)
    assert list(sweep.levels) == list(cfg.agg.max_corrupted)
    for mc in cfg.agg.max_corrupted:
        lv = res[res["Mc_max"] == mc]
        assert sorted(lv.loc[lv["method"] == "topt-e", "t"]) == list(cfg.agg.t_percents)
        assert sorted(lv.loc[lv["method"] == "topt-te", "t"]) == list(A.train_eval_percents(cfg))
        assert (lv["method"] == "learned").sum() == 1 and (lv["method"] == "mean").sum() == 1
        level = sweep.levels[mc]
        pd.testing.assert_frame_equal(level.rows, lv.reset_index(drop=True))
        # the level carries its trained models: the same ones get_aggregator gives (from the cache)
        assert list(level.models) == A.methods_for(cfg)
        again = A.get_aggregator(banks, Method("learned"), mc, progress=False)
        assert level.models[Method("learned")].key == again.key
        for a, b in zip(level.models[Method("learned")].model.state_dict().values(), again.model.state_dict().values()):
            assert torch.equal(a, b)
        assert set(level.histories()) == {m.label for m in A.methods_for(cfg)} - {"topt-te t=100"}
    assert res[["mAP", "rank1"]].apply(lambda c: c.between(0, 1)).all().all()
    trained = (res["method"] != "mean") & ~((res["method"] == "topt-te") & (res["t"] == 100))
    assert (res.loc[trained, "train_seconds"] > 0).all()
    # top-t%-train-eval at t = 100 % trains like top-t%-eval: the same model, reused, same scores
    te100 = res[(res["method"] == "topt-te") & (res["t"] == 100)].set_index("Mc_max")
    e100 = res[(res["method"] == "topt-e") & (res["t"] == 100)].set_index("Mc_max")
    assert (te100["train_seconds"] == 0).all()
    pd.testing.assert_series_equal(te100["mAP"], e100["mAP"])

    wide = T.table2_wide(res)
    assert list(wide.columns) == [(m, mc) for m in ("mAP", "rank1") for mc in cfg.agg.max_corrupted]
    assert list(wide.index.get_level_values("method"))[0] == "mean"
    assert list(wide.index.get_level_values("method"))[-1] == "learned"
    row = res[(res["method"] == "learned") & (res["Mc_max"] == 2)]
    assert wide.loc[("learned", np.nan), ("mAP", 2)] == pytest.approx(100 * float(row["mAP"].iloc[0]))

    side = T.table2_side_by_side(res, "rank1")
    assert list(side.columns) == list(cfg.agg.max_corrupted)
    sources = set(side.index.get_level_values("source"))
    assert sources == {"ours (synthetic)", "paper (MARS)"}
    assert "mean" not in side.xs("paper (MARS)", level="source").index.get_level_values("method")

    coll = T.sweep_collapse(sweep, cfg.agg.margin)
    assert list(coll.index.names) == ["Mc_max", "model"]
    assert set(coll.index) == {(mc, lab) for mc, lv in sweep.levels.items() for lab in lv.histories()}

    # a second run trains nothing and evaluates nothing: models and result rows come from the cache
    def boom(*a, **k):
        raise AssertionError("should have been loaded from the cache")

    monkeypatch.setattr(A, "train_aggregator", boom)
    monkeypatch.setattr(CS, "per_query_scores", boom)
    again = CS.run_sweep(banks, progress=False)
    pd.testing.assert_frame_equal(again.rows, res)
    # a different training setting is another model
    with pytest.raises(AssertionError, match="cache"):
        CS.run_level(ClipBanks(_cfg(tmp_path, iterations=4), banks.clean, banks.corrupted), 0, progress=False)


def test_get_aggregator_returns_trained_models(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path)
    banks = _clip_banks(cfg)
    learned = A.get_aggregator(banks, Method("learned"), 2, progress=False)
    assert learned.key and not learned.model.training and learned.seconds > 0
    assert list(learned.history["iteration"]) == [1, 2, 3] and learned.info["Mc_max"] == 2
    base = A.get_aggregator(banks, Method("topt-eval"), 2, progress=False)
    te100 = A.get_aggregator(banks, Method("topt-train-eval", 100.0), 2, progress=False)
    assert te100.key == base.key and te100.seconds == 0 and te100.info["reused_from"] == "topt-eval"
    mean = A.get_aggregator(banks, Method("mean"), 2, progress=False)
    assert mean.key == "mean" and mean.history.empty and mean.seconds == 0
    with pytest.raises(ValueError, match="corrupted"):
        A.get_aggregator(ClipBanks(cfg, banks.clean), Method("learned"), 2, progress=False)


def test_get_aggregator_resumes_interrupted_training(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path, iterations=8)
    clean, bad = _banks()
    ref = A.get_aggregator(
        ClipBanks(_cfg(tmp_path / "ref", iterations=8), clean, bad), Method("learned"), 2, progress=False
    )
    real = agg_train.train_aggregator
    calls = {"n": 0}

    def crash_after_checkpoint(*a, **k):
        k = dict(k, batch_transform=_crashing(k["batch_transform"], at=5))
        return real(*a, **k)

    def _crashing(tf, at):
        def f(idx, x, rng):
            calls["n"] += 1
            if calls["n"] == at:
                raise KeyboardInterrupt
            return tf(idx, x, rng)

        return f

    banks = ClipBanks(cfg, clean, bad)
    monkeypatch.setattr(A, "train_aggregator", crash_after_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        A.get_aggregator(banks, Method("learned"), 2, progress=False)
    assert list((tmp_path / "art" / "smoke").glob("agg-checkpoint-*.pt"))  # the resume point
    monkeypatch.setattr(A, "train_aggregator", real)
    tm = A.get_aggregator(banks, Method("learned"), 2, progress=False)
    assert list(tm.history["iteration"]) == list(range(1, 9))
    for a, b in zip(tm.model.state_dict().values(), ref.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not list((tmp_path / "art" / "smoke").glob("agg-checkpoint-*.pt"))


def _fake_results(learned, best_e, best_te):
    rows = []
    for mc, (lr, e, te) in enumerate(zip(learned, best_e, best_te)):
        rows += [
            {"method": "learned", "t": np.nan, "Mc_max": mc, "mAP": lr, "rank1": lr},
            {"method": "topt-e", "t": 20.0, "Mc_max": mc, "mAP": e, "rank1": e},
            {"method": "topt-e", "t": 50.0, "Mc_max": mc, "mAP": e - 0.05, "rank1": e},
            {"method": "topt-te", "t": 20.0, "Mc_max": mc, "mAP": te, "rank1": te},
            {"method": "mean", "t": np.nan, "Mc_max": mc, "mAP": 0.1, "rank1": 0.1},
        ]
    return pd.DataFrame(rows)


def test_claim_check_reads_the_numbers():
    graceful = _fake_results([0.50, 0.49, 0.47], [0.51, 0.45, 0.30], [0.50, 0.46, 0.35])
    tab = T.claim_check(graceful)
    assert list(tab.index) == ["ours", "paper (MARS)"] and tab.index.name == "source"
    c = tab.loc["ours"]
    assert c["holds"] and (c["lo"], c["hi"]) == (0, 2) and c["metric"] == "mAP"
    assert c["best_label_hi"] == "topt-te t=20%" and c["best_label_lo"] == "topt-e t=20%"
    assert c["learned_hi"] == pytest.approx(47.0) and c["drop_topt"] == pytest.approx(51.0 - 35.0)
    assert c["gap_hi"] == pytest.approx(47.0 - 35.0) and c["drop_learned"] == pytest.approx(3.0)
    # the paper's row: its Table 2 at the same levels
    ref = T.claim_numbers(paper.paper_results().query("Mc_max in [0, 2]"), "mAP")
    assert tab.loc["paper (MARS)"].to_dict() == ref
    worse = _fake_results([0.50, 0.40, 0.20], [0.51, 0.45, 0.30], [0.50, 0.46, 0.35])
    assert not T.claim_check(worse, "rank1").loc["ours", "holds"]
    assert T.claim_numbers(paper.paper_results(), "mAP")["holds"]  # the paper's own numbers support its claim
    one_level = T.claim_numbers(T.as_percent(graceful[graceful["Mc_max"] == 2]), "mAP")
    assert (one_level["lo"], one_level["hi"]) == (2, 2) and not one_level["holds"]


def test_paper_table2_package_data():
    p = paper.paper_table2()
    assert set(p["method"]) == {"topt-e", "topt-te", "learned"}
    assert set(p["metric"]) == {"mAP", "rank1"} and sorted(p["Mc_max"].unique()) == list(range(8))
    assert p[p["method"] == "learned"]["t"].isna().all()
    assert sorted(p.loc[p["method"] == "topt-te", "t"].unique()) == list(A.TRAIN_EVAL_PERCENTS)
    assert len(p) == p.groupby(["method", "t", "metric", "Mc_max"], dropna=False).ngroups
    r = paper.paper_results()
    assert {"mAP", "rank1"} <= set(r.columns) and len(r) == len(p) // 2


def test_training_cost_and_importance(tmp_path):
    torch.set_num_threads(1)
    cfg = _cfg(tmp_path)
    banks = _clip_banks(cfg)
    clean = banks.clean
    level = CS.run_level(banks, 0, progress=False)
    cost = T.training_cost(level.rows)
    assert set(cost.columns) == {"learned", "topt-e"} | {f"topt-te t={t:g}" for t in A.train_eval_percents(cfg)}
    model = level.models[Method("learned")].model
    conv = T.convergence_table({"learned": level.histories()["learned"]}, parts=3)
    assert list(conv.index[:3]) == [1, 2, 3] and conv.index[-1] == "change, last block (%)"
    methods = T.methods_table(level.rows, t_show=[50])
    assert list(methods.index) == ["mean", "learned", "topt-e t=50%"] + [
        f"topt-te t={t:g}%" for t in A.train_eval_percents(cfg)
    ]
    tab = PI.importance_table(model, clean["query"], clean["gallery"], num_queries=2)
    assert len(tab) == 2 * len(clean["gallery"]) * M * M
    per_pair = tab.groupby(["q", "g"])["alpha_rel"].mean()
    assert np.allclose(per_pair, 1.0, atol=1e-5)
    by = PI.importance_by_corruption(tab, banks.plan("query", 2), banks.plan("gallery", 2))
    assert by["pairs"].sum() == len(tab)
    summ = PI.importance_summary(tab)["value"]
    assert 0 < summ["effective fraction of clip pairs used, median"] <= 1
    assert -1 <= summ["Spearman(alpha, cos), all clip pairs"] <= 1
    panels = PI.importance_panels(model, clean["query"], clean["gallery"], query_index=0)
    assert len(panels) == 2 and "true match" in panels[0][0] and "impostor" in panels[1][0]
    assert all(p[1].shape == (M, M) and p[2].shape == (M, M) for p in panels)


def test_topt_scores_all_t_equal_per_t_models():
    torch.set_num_threads(1)
    clean, _ = _banks()
    q, g = clean["query"].feats, clean["gallery"].feats
    model = agg_train.build_aggregator("topt-eval", D, t_percent=50, seed=1)
    with torch.no_grad():
        model.proj.weight.add_(0.1 * torch.randn(D, D, generator=torch.Generator().manual_seed(0)))
    ts = (5, 10, 30, 50, 100)
    all_t = CS.topt_scores_all_t(model, q, g, ts, max_elems=3 * len(g) * M * M)  # 3 query rows per chunk
    for t in ts:
        for kind in ("topt-eval", "topt-train-eval"):
            ref = agg_train.build_aggregator(kind, D, t_percent=t)
            ref.load_state_dict(model.state_dict())
            assert torch.allclose(all_t[t], ref.similarity_matrix(q, g, progress=False), atol=1e-6), t


def test_collapse_check_flags_a_flat_loss_at_the_margin():
    it = np.arange(1, 101)
    converged = pd.DataFrame(
        {"iteration": it, "loss": 0.05 + 0.001 * np.sin(it), "hard_pos_sim": 0.8, "hard_neg_sim": 0.4}
    )
    collapsed = pd.DataFrame(
        {"iteration": it, "loss": 0.3 + 1e-4 * np.sin(it), "hard_pos_sim": 0.9991, "hard_neg_sim": 0.9993}
    )
    c = T.collapse_check({"ok": converged, "bad": collapsed}, margin=0.3)
    assert c.loc["bad", "collapsed"] and not c.loc["ok", "collapsed"]


def test_corruption_shift_rows():
    clean, bad = _banks()
    shift = CB.corruption_shift(clean["gallery"], bad["gallery"], seed=0, num_pairs=500)
    assert list(shift.columns) == ["mean cosine", "std"] and len(shift) == 4
    assert shift["mean cosine"].between(-1, 1).all()


def test_train_all_side_by_side_gives_the_models_of_one_by_one(tmp_path):
    """Processes with 1 torch thread each train the same models, bit for bit, as
    get_aggregator does in this process; what is cached is not trained again."""
    clean, bad = _banks()
    jobs = [(m, lv) for lv in (0, 2) for m in A.methods_for(_cfg(tmp_path))]
    par = ClipBanks(_cfg(tmp_path / "par"), clean, bad)
    todo = A.train_all(par, jobs, workers=2, progress=False)
    assert todo[0][0].kind == "learned" and len(todo) == 2 * (len(A.methods_for(par.cfg)) - 1)  # t=100 reused
    assert all(m.kind != "topt-train-eval" or m.t < 100 for m, _ in todo)
    assert A.train_all(par, jobs, workers=2, progress=False) == []  # all cached now
    seq = ClipBanks(_cfg(tmp_path / "seq"), clean, bad)
    before = torch.get_num_threads()
    for m, lv in jobs:
        a = A.get_aggregator(par, m, lv, progress=False)
        b = A.get_aggregator(seq, m, lv, progress=False)
        for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
            assert torch.equal(x, y), (m, lv)
    assert torch.get_num_threads() == before  # training's 1 thread is restored afterwards
    with pytest.raises(ValueError, match="workers"):
        A.train_all(ClipBanks(_cfg(tmp_path / "w"), clean, bad), jobs, workers=0, progress=False)


def test_default_workers_reads_the_environment(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    monkeypatch.setenv("REID_WORKERS", "3")
    assert A.default_workers(cfg) == 3
    monkeypatch.setenv("REID_WORKERS", "two")
    with pytest.raises(ValueError, match="REID_WORKERS"):
        A.default_workers(cfg)
    monkeypatch.delenv("REID_WORKERS")
    assert A.default_workers(_cfg(tmp_path, train_threads=0)) == 1


def test_a_larger_margin_is_the_same_run_when_every_hinge_is_active(tmp_path):
    """The argument margin_comparison relies on, checked by training both margins."""
    from reid_utils.experiments import aggregator_controls as ctl

    clean, _ = _banks()
    models = {}
    for m in (0.5, 1.5):
        banks = ClipBanks(_cfg(tmp_path / str(m), margin=m, iterations=6), clean)
        models[m] = A.get_aggregator(banks, Method("learned"), 0, progress=False)
    assert (models[0.5].history["active"] == 1.0).all()
    for x, y in zip(models[0.5].model.state_dict().values(), models[1.5].model.state_dict().values()):
        assert torch.equal(x, y)
    tab = ctl.margin_comparison(ClipBanks(_cfg(tmp_path / "0.5", margin=0.5, iterations=6), clean), [1.5])
    assert list(tab.index) == [0.5, 1.5] and tab["trained"].tolist() == [True, False]
    assert tab["always_active"].all() and tab.loc[0.5, "test_mAP"] == tab.loc[1.5, "test_mAP"]
    # with margin 0 some hinge is met, so a larger margin is trained, not assumed equal
    tab0 = ctl.margin_comparison(ClipBanks(_cfg(tmp_path / "0", margin=0.0, iterations=6), clean), [0.5])
    assert not tab0.loc[0.0, "always_active"] and tab0["trained"].tolist() == [True, True]
