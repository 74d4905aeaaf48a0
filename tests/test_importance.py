"""Tests for reid_utils.experiments.importance, .nuisance_labels and .importance_vs_nuisance (Fig. 7, measured)
and the figures of reid_utils.viz.importance."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from reid_utils.eval.auc import roc_auc
from reid_utils.experiments import clip_banks as CB
from reid_utils.experiments import importance as I
from reid_utils.experiments import importance_vs_nuisance as V
from reid_utils.experiments import nuisance_labels as NL
from reid_utils.models.aggregation import LearnedClipAggregator, TopTAggregator, top_t_count
from reid_utils.synth import NUISANCES

matplotlib.use("Agg")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: NL.clip_labels(np.zeros((2, 3, 1)), min_fraction=0), "min_fraction"),
        (lambda: V.sample_pairs(0, 3), "num_query"),
        (lambda: V.sample_pairs(2, 3, max_pairs=0), "max_pairs"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- #
# labels from annotations
# --------------------------------------------------------------------------- #
def _ann(**cols):
    n = len(next(iter(cols.values())))
    names = ["true_pid"] + list(NUISANCES)
    arrs = [np.asarray(cols.get(k, np.zeros(n, int))) for k in names]
    return np.rec.fromarrays(arrs, names=names).view(np.ndarray)


def test_labels_from_annotations_hand_built_case():
    # tracklet 0: 6 frames, occlusion on frames 0-2, empty on 5; tracklet 1: blur on frame 1
    t0 = SimpleNamespace(tid="a", annotations=_ann(occlusion=[1, 1, 1, 0, 0, 0], empty=[0, 0, 0, 0, 0, 1]))
    t1 = SimpleNamespace(tid="b", annotations=_ann(blur=[0, 1, 0, 0]))
    frames = np.array(
        [
            [[0, 1], [2, 3], [4, 5]],  # (N=2, M=3, L=2)
            [[0, 1], [1, 2], [3, 3]],
        ]
    )
    fr = NL.clip_nuisance_fractions([t0, t1], frames)
    k = {n: i for i, n in enumerate(NUISANCES)}
    assert fr[0, :, k["occlusion"]].tolist() == [1.0, 0.5, 0.0]
    assert fr[0, :, k["empty"]].tolist() == [0.0, 0.0, 0.5]
    assert fr[1, :, k["blur"]].tolist() == [0.5, 0.5, 0.0]
    half = NL.clip_labels(fr, 0.5)
    full = NL.clip_labels(fr, 1.0)
    assert half[0, :, k["occlusion"]].tolist() == [True, True, False]
    assert full[0, :, k["occlusion"]].tolist() == [True, False, False]
    # pair labels: a pair contains X if its query or its gallery clip does
    table = pd.DataFrame({"q": [0, 0, 0], "g": [1, 1, 1], "i": [0, 2, 2], "j": [2, 0, 2]})
    out = NL.pair_labels(table, half, half, NUISANCES)
    assert out["occlusion"].tolist() == [True, False, False]
    assert out["blur"].tolist() == [False, True, False]
    assert out["empty"].tolist() == [False, True, True]


def test_labels_need_annotations_and_valid_frames():
    t = SimpleNamespace(tid="x", annotations=None)
    with pytest.raises(ValueError, match="annotations"):
        NL.clip_nuisance_fractions([t], np.zeros((1, 2, 2), int))
    t = SimpleNamespace(tid="x", annotations=_ann(blur=[0, 1]))
    with pytest.raises(ValueError, match="outside"):
        NL.clip_nuisance_fractions([t], np.full((1, 2, 2), 5))
    with pytest.raises(ValueError, match="clip_frames"):
        NL.clip_nuisance_fractions([t], np.zeros((1, 2), int))


def test_sample_pairs_equal_per_query_and_seeded():
    all_pairs = V.sample_pairs(3, 4)
    assert len(all_pairs) == 12
    p = V.sample_pairs(10, 50, max_pairs=100, seed=3)
    assert np.bincount(p[:, 0]).tolist() == [10] * 10
    assert all(len(set(p[p[:, 0] == q, 1])) == 10 for q in range(10))
    np.testing.assert_array_equal(p, V.sample_pairs(10, 50, max_pairs=100, seed=3))
    assert not np.array_equal(p, V.sample_pairs(10, 50, max_pairs=100, seed=4))


# --------------------------------------------------------------------------- #
# per clip pair
# --------------------------------------------------------------------------- #
def _feats(seed, Q=4, G=5, M=3, D=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(Q, M, D, generator=g), torch.randn(G, M, D, generator=g)


def test_clip_pair_table_is_the_forward_pass():
    torch.manual_seed(0)
    model = LearnedClipAggregator(6, 8).eval()
    qf, gf = _feats(0)
    pairs = np.array([[0, 1], [3, 4], [2, 0]])
    qi = np.arange(4 * 3 * 2).reshape(4, 3, 2)
    gi = np.arange(5 * 3 * 2).reshape(5, 3, 2)
    tab = I.clip_pair_table(model, qf, gf, pairs, qi, gi, chunk=2)
    assert len(tab) == 3 * 9
    with torch.no_grad():
        s, a = model(qf[pairs[:, 0]], gf[pairs[:, 1]])
    np.testing.assert_allclose(tab["alpha"].to_numpy().reshape(3, 9), a.numpy(), rtol=1e-6)
    np.testing.assert_allclose(tab.groupby(["q", "g"], sort=False)["similarity"].first(), s.numpy(), rtol=1e-6)
    np.testing.assert_allclose(tab.groupby(["q", "g"])["alpha_rel"].mean(), 1.0, rtol=1e-9)
    r = tab.iloc[9 + 5]  # second pair (3, 4), t = 5 -> i = 1, j = 2
    assert (r["q"], r["g"], r["i"], r["j"]) == (3, 4, 1, 2)
    assert r["q_frames"] == tuple(qi[3, 1]) and r["g_frames"] == tuple(gi[4, 2])
    cos = torch.nn.functional.cosine_similarity(qf[3, 1], gf[4, 2], dim=0).item()
    assert r["cos"] == pytest.approx(cos, abs=1e-6)
    with pytest.raises(ValueError, match="pairs"):
        I.clip_pair_table(model, qf, gf, np.array([[0, 9]]))


def test_topt_columns_select_the_top_t_projected_cosines():
    torch.manual_seed(1)
    qf, gf = _feats(1, M=4)
    topt = TopTAggregator(6, 100.0)
    with torch.no_grad():
        topt.proj.weight.add_(0.3 * torch.randn(6, 6))
    model = LearnedClipAggregator(6, 8).eval()
    tab = I.topt_columns(I.clip_pair_table(model, qf, gf, V.sample_pairs(4, 5)), topt, qf, gf, t_percent=25)
    k = top_t_count(25, 16)
    for _, grp in tab.groupby(["q", "g"]):
        assert grp["topt_selected"].sum() == k
        assert grp.loc[grp["topt_selected"], "topt_cos"].min() >= grp.loc[~grp["topt_selected"], "topt_cos"].max()
        assert grp["topt_rank"].max() == 1.0 and grp["topt_rank"].min() == 0.0
    assert topt.t_percent == 100.0  # the caller's model is untouched


def test_choose_examples_true_match_and_hardest_non_match():
    S = np.array([[0.9, 0.8, 0.7, 0.95, 0.1], [0.1, 0.2, 0.3, 0.4, 0.5]])
    q_pids, g_pids = np.array([1, 2]), np.array([1, 1, 3, 1, -1])
    q_cam, g_cam = np.array([0, 0]), np.array([0, 1, 1, 0, 1])
    ex = I.choose_examples(S, q_pids, g_pids, q_cam, g_cam, queries=[0])
    # gallery 0 and 3 share pid and camera with the query: left out; junk (pid -1) never a non-match
    assert ex["g"].tolist() == [1, 2] and ex["kind"].tolist() == ["true match", "hard non-match"]
    assert ex["rank"].tolist() == [1, 2]
    with pytest.raises(ValueError, match="query 1"):
        I.choose_examples(S, q_pids, g_pids, q_cam, g_cam, queries=[1])
    auto = I.choose_examples(S, q_pids, g_pids, q_cam, g_cam, num_queries=5)
    assert set(auto["q"]) == {0}


def test_extreme_clip_pairs():
    tab = pd.DataFrame({"q": 0, "g": 1, "i": [0, 0, 1, 1], "j": [0, 1, 0, 1], "alpha": [3.0, 1.0, 4.0, 2.0]})
    ext = I.extreme_clip_pairs(tab, 2)
    assert ext[ext["which"] == "highest"]["alpha"].tolist() == [4.0, 3.0]
    assert ext[ext["which"] == "lowest"]["alpha"].tolist() == [1.0, 2.0]


def test_importance_auc_and_verdicts_follow_the_numbers():
    rng = np.random.default_rng(5)
    n_seq, T = 60, 9
    q = np.repeat(np.arange(n_seq) % 20, T)
    bad = rng.random(n_seq * T) < 0.3
    unrelated = rng.random(n_seq * T) < 0.3
    alpha = np.exp(rng.normal(size=n_seq * T) - 1.5 * bad)  # bad pairs get low weight
    tab = pd.DataFrame(
        {
            "q": q,
            "g": np.repeat(np.arange(n_seq), T),
            "alpha_rel": alpha,
            "topt_selected": rng.random(n_seq * T) < 0.5,
            "topt_rank": rng.random(n_seq * T),
            "occlusion": bad,
            "blur": unrelated,
            "empty": ~bad,
        }
    )
    auc, reps = V.importance_auc(tab, ["occlusion", "blur", "empty"], num_boot=300, return_replicates=True)
    a = auc[auc["method"] == "learned"].set_index("nuisance")
    assert a.loc["occlusion", "auc"] == pytest.approx(roc_auc(-alpha, bad))
    assert a.loc["occlusion", "lo"] > 0.5 and a.loc["empty", "hi"] < 0.5
    assert set(auc["method"]) == {"learned", "topt-select", "topt-rank"}
    cmp = V.compare_methods(auc, reps)
    assert cmp.loc["occlusion", "lo"] > 0
    v = V.auc_verdicts(auc.assign(level=2), cmp)
    assert list(v.index) == ["occlusion", "blur", "empty"]
    assert v.loc["occlusion", "verdict"] == "above" and v.loc["empty", "verdict"] == "below"
    assert v.loc["occlusion", "vs_baseline"] == "higher"
    assert (
        v.loc["occlusion", "auc"] == a.loc["occlusion", "auc"]
        and v.loc["occlusion", "diff"] == cmp.loc["occlusion", "diff"]
    )
    assert (
        v.loc["occlusion", "baseline_auc"]
        == auc.query("method == 'topt-select' and nuisance == 'occlusion'")["auc"].iloc[0]
    )
    assert v.loc["occlusion", "clip_pairs"] == len(tab) and np.isnan(v.loc["occlusion", "step_auc"])  # no "t" column
    with pytest.raises(ValueError, match="labels"):
        V.importance_auc(tab, ["nope"])


def test_auc_verdicts_undefined_chance_and_no_comparison():
    auc = pd.DataFrame(
        {
            "method": ["learned", "learned", "learned-step", "learned-step"],
            "nuisance": ["corrupted", "blur", "corrupted", "blur"],
            "auc": [np.nan, 0.52, np.nan, 0.55],
            "lo": [np.nan, 0.45, np.nan, 0.51],
            "hi": [np.nan, 0.60, np.nan, 0.60],
            "n_pos": [0, 30, 0, 30],
            "n_neg": [90, 60, 90, 60],
        }
    )
    v = V.auc_verdicts(auc)
    assert v["verdict"].tolist() == ["undefined", "chance"]
    assert v.loc["blur", "step_auc"] == 0.55 and np.isnan(v.loc["blur", "baseline_auc"])
    assert v["diff"].isna().all() and v["vs_baseline"].isna().all()
    with pytest.raises(ValueError, match="no rows for method"):
        V.auc_verdicts(auc, method="topt-select")


def test_step_adjustment_removes_a_visiting_order_effect():
    # alpha depends only on the step t; the label marks the early steps: raw AUC far from 0.5, adjusted ~0.5
    rng = np.random.default_rng(8)
    n_seq, T = 200, 16
    t = np.tile(np.arange(T), n_seq)
    alpha = np.where(t < 4, 0.3, 1.2) * np.exp(0.3 * rng.normal(size=len(t)))
    tab = pd.DataFrame({"q": np.repeat(np.arange(n_seq) % 25, T), "t": t, "alpha_rel": alpha, "early": t < 4})
    auc = V.importance_auc(tab, ["early"], num_boot=200).set_index("method")
    assert auc.loc["learned", "auc"] > 0.9
    assert auc.loc["learned-step", "lo"] < 0.5 < auc.loc["learned-step", "hi"]


# --------------------------------------------------------------------------- #
# figures
# --------------------------------------------------------------------------- #
class _FakeSource:
    def frames(self, seq, idx, clip=None):
        return [np.full((16, 8, 3), (37 * seq + 11 * int(i)) % 255, np.uint8) for i in idx]

    def flags(self, seq, idx, clip=None):
        return [["occlusion"] if int(i) % 2 else [] for i in idx]


def test_figures_draw():
    import matplotlib.pyplot as plt

    from reid_utils.viz import importance as VI

    torch.manual_seed(0)
    model = LearnedClipAggregator(6, 8).eval()
    qf, gf = _feats(2)
    ex = pd.DataFrame(
        {
            "q": [0, 1],
            "g": [2, 3],
            "kind": ["true match", "hard non-match"],
            "similarity": [0.5, 0.4],
            "q_pid": [1, 2],
            "g_pid": [1, 3],
        }
    )
    idx_q, idx_g = np.arange(4 * 3 * 2).reshape(4, 3, 2), np.arange(5 * 3 * 2).reshape(5, 3, 2)
    tab = I.clip_pair_table(model, qf, gf, ex[["q", "g"]].to_numpy(), idx_q, idx_g)
    fig = VI.plot_fig7(ex, tab, _FakeSource(), _FakeSource())
    assert len(fig.axes) >= 2 * 5
    png = VI.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close(fig)
    img = VI.clip_pair_image(
        _FakeSource().frames(0, [0, 1]), _FakeSource().frames(1, [0, 1]), 16, [[], ["occlusion"]], [[], []]
    )
    assert img.dtype == np.uint8 and img.shape[0] == 16 + 6
    auc = pd.DataFrame(
        {
            "level": 0,
            "method": ["learned", "topt-select"],
            "method_label": ["a", "b"],
            "nuisance": "blur",
            "auc": [0.6, np.nan],
            "lo": [0.55, np.nan],
            "hi": [0.65, np.nan],
            "prevalence": 0.2,
        }
    )
    fig = VI.plot_importance_auc(auc)
    plt.close(fig)
    with pytest.raises(ValueError, match="methods"):
        VI.plot_importance_auc(auc, methods=("nothing",))


# --------------------------------------------------------------------------- #
# the measurement end to end (tiny banks, a few training iterations)
# --------------------------------------------------------------------------- #
def _tiny_setup(tmp_path):
    from reid_utils.config import get_config
    from reid_utils.training.features import FeatureBank

    Mc, Lc, Dc = 4, 2, 8
    cfg = get_config(
        "smoke",
        artifacts_dir=str(tmp_path / "art"),
        agg=dict(
            num_clips=Mc, clip_len=Lc, hidden=8, P=3, K=2, iterations=3, max_corrupted=(0, 2), t_percents=(50, 100)
        ),
    )
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(6, Dc))

    def bank(pids, cams, tag, junk=False):
        x = protos[np.asarray(pids) - 1][:, None, :] + 0.5 * rng.normal(size=(len(pids), Mc, Dc))
        if junk:
            x = np.ones_like(x) + 0.2 * rng.normal(size=x.shape)
        idx = np.tile((np.arange(Mc * Lc).reshape(Mc, Lc))[None], (len(pids), 1, 1))
        return FeatureBank(
            torch.tensor(np.abs(x), dtype=torch.float32), np.array(pids), np.array(cams), idx, meta={"key": tag}
        )

    splits = {
        "train": ([1, 1, 2, 2, 3, 3, 4, 4], [0, 1] * 4),
        "query": ([5, 6], [0, 0]),
        "gallery": ([5, 5, 6, 6, 1], [1, 1, 1, 1, 1]),
    }
    clean = {s: bank(p, c, s) for s, (p, c) in splits.items()}
    bad = {s: bank(p, c, s + "-bad", junk=True) for s, (p, c) in splits.items()}
    tracks = {
        s: [
            SimpleNamespace(
                tid=f"{s}{n}", annotations=_ann(**{k: (rng.random(Mc * Lc) < 0.3).astype(int) for k in NUISANCES})
            )
            for n in range(len(clean[s]))
        ]
        for s in ("query", "gallery")
    }
    return cfg, SimpleNamespace(**tracks), clean, bad


def test_measure_end_to_end(tmp_path):
    cfg, ds, clean, bad = _tiny_setup(tmp_path)
    banks = CB.ClipBanks(cfg, clean, bad)
    res = V.measure(ds, banks, 2, t_percent=50, max_pairs=None, num_boot=50, progress=False)
    tab, auc = res["table"], res["auc"]
    assert len(tab) == 2 * 5 * 16 and res["labels"] == list(NUISANCES) + ["corrupted"]
    # the corrupted label is the level's test plan
    qp, gp = CB.test_plan(cfg, "query", 2, 2), CB.test_plan(cfg, "gallery", 5, 2)
    expect = qp[tab["q"], tab["i"]] | gp[tab["g"], tab["j"]]
    np.testing.assert_array_equal(tab["corrupted"].to_numpy(), expect)
    assert set(auc["level"]) == {2} and len(auc) == 4 * 6
    row = auc[(auc["method"] == "learned") & (auc["nuisance"] == "corrupted")].iloc[0]
    if row["n_pos"] and row["n_neg"]:
        assert row["auc"] == pytest.approx(roc_auc(-tab["alpha_rel"], tab["corrupted"]))
    clean_run = V.measure(ds, banks, 0, max_pairs=None, num_boot=20, progress=False)
    assert np.isnan(clean_run["auc"].query("nuisance == 'corrupted'")["auc"]).all()
    run = V.learned_at_level(banks, 2, progress=False)
    assert run["S"].shape == (2, 5)
    np.testing.assert_allclose(run["S"][tab["q"], tab["g"]], tab["similarity"], atol=1e-4)


def test_extremes_vs_labels_counts_the_selected_pairs():
    tab = pd.DataFrame(
        {
            "q": 0,
            "g": np.repeat([0, 1], 4),
            "alpha": [4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0],
            "bad": [False, False, True, True, True, False, False, False],
        }
    )
    out = I.extremes_vs_labels(tab, ["bad"], n=2)
    assert out.loc["2 lowest", "bad"] == 0.75 and out.loc["2 highest", "bad"] == 0.0
    assert out.loc["all clip pairs", "bad"] == 3 / 8 and out.loc["2 lowest", "clip pairs"] == 4
    with pytest.raises(ValueError, match="missing"):
        I.extremes_vs_labels(tab, ["nope"])


def test_split_clip_labels_without_annotations_is_none():
    ds = SimpleNamespace(query=[SimpleNamespace(annotations=None)], gallery=[SimpleNamespace(annotations=None)])
    assert NL.split_clip_labels(ds, {}) == (None, None)
