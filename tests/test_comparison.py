"""Tests for reid_utils.experiments.comparison, .comparison_data, .comparison_rows and .similarity_sets
(notebook 07: Tables 3-5 beside our rows, Sec. 4.5)."""

import numpy as np
import pandas as pd
import pytest
import torch

from reid_utils import paper
from reid_utils.config import get_config
from reid_utils.eval.distances import similarity_to_distance
from reid_utils.eval.ranking import evaluate_rank, mars_official_gallery
from reid_utils.experiments import comparison as C
from reid_utils.experiments import comparison_data as D
from reid_utils.experiments import comparison_rows as R
from reid_utils.experiments import similarity_sets as SS
from reid_utils.models.aggregation import LearnedClipAggregator, MeanFeatureAggregator
from reid_utils.training.features import FeatureBank

LAMBDA1 = {"k1": 3, "k2": 2, "lambda_value": 1.0}


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _random_set(seed=0, Q=5, G=12, J=3, ids=4, asym=True):
    """A SimilaritySet from random unit embeddings (cosines), directed blocks perturbed."""
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(ids, 8))
    qp = rng.integers(0, ids, Q)
    gp = np.concatenate([np.arange(ids), rng.integers(0, ids, G - ids)])

    def emb(p):
        x = proto[p] + 0.8 * rng.normal(size=(len(p), 8))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    q, g, j = emb(qp), emb(gp), emb(rng.integers(0, ids, J))
    noise = (lambda a: a + 0.01 * rng.normal(size=a.shape)) if asym else (lambda a: a)
    return SS.assemble_similarity_set(
        noise(q @ g.T),
        noise(q @ q.T),
        noise(g @ g.T),
        qp,
        np.zeros(Q, int),
        gp,
        rng.integers(1, 3, G),
        s_qj=q @ j.T,
        s_gj=g @ j.T,
        s_jj=j @ j.T,
        j_camids=rng.integers(0, 3, J),
    )


def _ours_rows(dataset="synthetic", source="ours (synthetic benchmark, smoke profile)"):
    """Rows shaped like our_results output, values made up (percent)."""
    rows = []
    for i, ((method, rr), label) in enumerate(R.OUR_MODELS.items()):
        for protocol in ("torchreid", "mars_official"):
            rows.append(
                {
                    "dataset": dataset,
                    "source": source,
                    "method": method,
                    "model": label,
                    "protocol": protocol,
                    "reranking": rr,
                    "mAP": 10.0 + i,
                    "R1": 20.0 + i,
                    "R5": 30.0 + i,
                    "R20": 40.0 + i,
                    "cmc": np.linspace(0.2, 1.0, 20),
                }
            )
    return pd.DataFrame(rows)


def _bank(feats, pids, camids):
    return FeatureBank(
        torch.as_tensor(feats, dtype=torch.float32),
        np.asarray(pids),
        np.asarray(camids),
        np.zeros((len(pids), feats.shape[1], 2), np.int64),
        meta={"key": "k"},
    )


# --------------------------------------------------------------------------- #
# the paper's tables
# --------------------------------------------------------------------------- #
def test_paper_tables_are_the_published_ones():
    t3, t4, t5 = (paper.paper_table(t) for t in (3, 4, 5))
    assert len(t3) == 16 and len(t4) == 4 and len(t5) == 8
    assert set(t3["source"]) == {"paper (MARS)"} and set(t4["source"]) == {"paper (DukeMTMC-VideoReID)"}
    assert set(t5["source"]) == {"paper (PRID2011)"}
    ours = t3.set_index("model").loc[["Ours (paper)", "Ours + Reranking (paper)"], ["mAP", "R1", "R5", "R20"]]
    assert ours.to_numpy().tolist() == [[75.9, 82.7, 94.0, 97.2], [83.3, 83.4, 93.4, 97.4]]
    assert t4.set_index("model").loc["Ours (paper)", "mAP"] == 88.5
    assert t5.set_index("model").loc["Ours (paper)", "R1"] == 82.9
    assert paper.paper_metrics(3) == ["mAP", "R1", "R5", "R20"] and paper.paper_metrics(5) == ["R1", "R5", "R20"]
    # the asterisk (3D CNN backbone) and the re-ranking flags of Table 3
    assert set(t3.loc[t3["backbone_3d"], "model"]) == {
        "RRU + STIM (2018)",
        "Two-Stream M3D (2018)",
        "Ours (paper)",
        "Ours + Reranking (paper)",
    }
    assert t3["reranking"].sum() == 6 and not t4["reranking"].any() and not t5["reranking"].any()
    assert np.isnan(t3.set_index("model").loc["TriNet + Reranking (2017)", "R20"])


def test_paper_table_rejects_other_numbers():
    for bad in (2, 6, "3"):
        with pytest.raises(ValueError, match="table"):
            paper.paper_table(bad)


# --------------------------------------------------------------------------- #
# table assembly
# --------------------------------------------------------------------------- #
def test_comparison_table_puts_ours_beside_the_paper_with_aligned_columns():
    ours = _ours_rows()
    tab = C.comparison_table(3, ours)
    published = paper.paper_table(3)
    assert list(tab.columns) == ["source", "model", "protocol", "mAP", "R1", "R5", "R20", "reranking", "backbone_3d"]
    assert len(tab) == len(published) + len(ours)
    # paper rows first, unchanged; ours after, labelled as ours and as the synthetic benchmark
    pd.testing.assert_frame_equal(
        tab.iloc[: len(published)].reset_index(drop=True), published[tab.columns].reset_index(drop=True)
    )
    tail = tab.iloc[len(published) :]
    assert set(tail["source"]) == {"ours (synthetic benchmark, smoke profile)"}
    assert tail["backbone_3d"].all()
    assert tail[["mAP", "R1", "R5", "R20"]].to_numpy().tolist() == ours[["mAP", "R1", "R5", "R20"]].to_numpy().tolist()
    assert set(tail["protocol"]) == {"torchreid", "mars_official"}
    assert set(tab.loc[: len(published) - 1, "protocol"]) == {"as published"}
    # paper rows alone when we measured nothing
    assert len(C.comparison_table(4)) == 4 and "mAP" in C.comparison_table(4).columns


def test_comparison_tables_only_the_measured_table_gets_our_rows():
    cfg = get_config("smoke")
    avail = D.data_availability(cfg)
    tabs = C.comparison_tables(_ours_rows(), avail)
    assert sorted(tabs) == [3, 4, 5]
    assert tabs[3]["source"].str.startswith("ours").sum() == 8
    assert not tabs[4]["source"].str.startswith("ours").any()
    assert not tabs[5]["source"].str.startswith("ours").any()


def test_comparison_table_bad_input():
    with pytest.raises(ValueError, match="do not belong beside Table 3"):
        C.comparison_table(3, _ours_rows(dataset="dukemtmc-videoreid"))
    with pytest.raises(ValueError, match="Table 5"):
        C.comparison_table(5, _ours_rows(dataset="synthetic"))
    with pytest.raises(ValueError, match="missing columns"):
        C.comparison_table(3, _ours_rows().drop(columns="R5"))


# --------------------------------------------------------------------------- #
# similarity sets and distances
# --------------------------------------------------------------------------- #
def test_assemble_similarity_set_layout():
    rng = np.random.default_rng(1)
    Q, G, J = 3, 4, 2
    qg, qq, gg = rng.random((Q, G)), rng.random((Q, Q)), rng.random((G, G))
    qj, gj, jj = rng.random((Q, J)), rng.random((G, J)), rng.random((J, J))
    s = SS.assemble_similarity_set(
        qg, qq, gg, [1, 2, 3], [0, 0, 0], [1, 2, 3, 0], [1, 1, 1, 1], s_qj=qj, s_gj=gj, s_jj=jj, j_camids=[2, 2]
    )
    S = s.sim
    assert S.shape == (G + Q + J,) * 2 and np.array_equal(S, S.T)
    assert np.array_equal(S[G : G + Q, :G], qg)  # the directed query->gallery score kept
    off = ~np.eye(Q, dtype=bool)
    assert np.allclose(S[G : G + Q, G : G + Q][off], ((qq + qq.T) / 2)[off])  # within a set: both directions
    assert np.allclose(S[G + Q :, G : G + Q], qj.T) and np.allclose(S[:G, G + Q :], gj)
    assert np.all(np.diag(S) == max(1.0, S[~np.eye(len(S), dtype=bool)].max()))
    assert s.pids.tolist() == [1, 2, 3, 0, 1, 2, 3, -1, -1] and s.camids.tolist()[-2:] == [2, 2]


def test_similarity_set_bad_input():
    ok = dict(
        s_qg=np.zeros((2, 3)),
        s_qq=np.zeros((2, 2)),
        s_gg=np.zeros((3, 3)),
        q_pids=[1, 2],
        q_camids=[0, 0],
        g_pids=[1, 2, 3],
        g_camids=[1, 1, 1],
    )
    with pytest.raises(ValueError, match="s_qg: expected shape"):
        SS.assemble_similarity_set(**dict(ok, s_qg=np.zeros((3, 2))))
    with pytest.raises(ValueError, match="give all four"):
        SS.assemble_similarity_set(**ok, s_qj=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="NaN"):
        SS.assemble_similarity_set(**dict(ok, s_gg=np.full((3, 3), np.nan)))
    with pytest.raises(ValueError, match="sim: expected shape"):
        SS.SimilaritySet(np.zeros((4, 4)), np.zeros(5), np.zeros(5), 3, 1, 1)


def test_distance_is_nonnegative_and_ordered_like_minus_similarity():
    s = np.array([[0.2, 1.0 + 3e-7, 1.0 + 1e-7, -0.5, 0.99999]])
    d = similarity_to_distance(s)
    assert d.min() == 0.0
    assert np.array_equal(np.argsort(d, kind="stable"), np.argsort(-s, kind="stable"))
    assert len(np.unique(d)) == s.size  # no ties created (no clipping)
    assert np.allclose(similarity_to_distance([[0.25, -1.0]]), [[0.75, 2.0]])  # 1 - s for cosines


def test_similarity_set_from_models_uses_their_scores():
    torch.manual_seed(0)
    M, Dm = 3, 6
    q = _bank(torch.rand(3, M, Dm).numpy(), [1, 2, 3], [0, 0, 0])
    g = _bank(torch.rand(5, M, Dm).numpy(), [1, 2, 3, 1, 0], [1, 1, 1, 2, 1])
    j = _bank(torch.rand(2, M, Dm).numpy(), [-1, -1], [0, 1])
    for model in (LearnedClipAggregator(Dm, 8).eval(), MeanFeatureAggregator(Dm)):
        s = SS.similarity_set(model, q, g, j)
        assert (s.num_gallery, s.num_query, s.num_junk) == (5, 3, 2)
        ref = model.similarity_matrix(q.feats, g.feats, progress=False).double().numpy()
        assert np.allclose(s.sim[5:8, :5], ref, atol=1e-6)
        # without re-ranking, torchreid rows are exactly those of ranking by -similarity
        cmc, mAP = SS.evaluate_set(s, "torchreid")
        cmc2, mAP2 = evaluate_rank(-ref, q.pids, g.pids, q.camids, g.camids, max_rank=5)
        assert mAP == pytest.approx(mAP2) and np.allclose(cmc, cmc2)
    assert SS.similarity_set(MeanFeatureAggregator(Dm), q, g).num_junk == 0


# --------------------------------------------------------------------------- #
# conventions and re-ranking
# --------------------------------------------------------------------------- #
def test_protocol_inputs_shapes_and_official_gallery():
    s = _random_set()
    Q, G, J = s.num_query, s.num_gallery, s.num_junk
    for rr in (False, True):
        d, qp, gp, qc, gc = SS.protocol_inputs(s, "torchreid", rr, LAMBDA1 | {"lambda_value": 0.3})
        assert d.shape == (Q, G) and len(gp) == G and (d >= 0).all()
        d, qp, gp, qc, gc = SS.protocol_inputs(s, "mars_official", rr, LAMBDA1 | {"lambda_value": 0.3})
        assert d.shape == (Q, G + Q + J) and len(gp) == len(gc) == G + Q + J
        assert (gp[G + Q :] == -1).all()
    # the official gallery is evaluation.mars_official_gallery's, then the junk columns
    D = similarity_to_distance(s.sim)
    qs = s.query_slice
    ref = mars_official_gallery(D[qs, :G], D[qs, qs], s.pids[qs], s.pids[:G], s.camids[qs], s.camids[:G])
    d, qp, gp, qc, gc = SS.protocol_inputs(s, "mars_official")
    assert np.array_equal(d[:, : G + Q], ref[0]) and np.array_equal(gp[: G + Q], ref[2])
    with pytest.raises(ValueError, match="protocol"):
        SS.protocol_inputs(s, "market")


def test_junk_changes_nothing_without_reranking_in_the_official_convention():
    s = _random_set(J=3)
    G, Q = s.num_gallery, s.num_query
    n = G + Q
    no_junk = SS.SimilaritySet(s.sim[:n, :n], s.pids[:n], s.camids[:n], G, Q, 0)
    a, b = SS.evaluate_set(s, "mars_official"), SS.evaluate_set(no_junk, "mars_official")
    assert a[1] == pytest.approx(b[1]) and np.allclose(a[0][:n], b[0][:n])


@pytest.mark.parametrize("protocol", ["torchreid", "mars_official"])
def test_reranking_with_lambda_one_keeps_the_ranking(protocol):
    """lambda = 1: the re-ranked distance is the normalised original, same order per query."""
    s = _random_set(seed=3)
    cmc, mAP = SS.evaluate_set(s, protocol)
    cmc1, mAP1 = SS.evaluate_set(s, protocol, rerank=True, rerank_params=LAMBDA1)
    assert mAP1 == pytest.approx(mAP, abs=1e-9) and np.allclose(cmc1, cmc)


def test_reranking_fixes_an_impostor_outside_the_reciprocal_neighbourhood():
    """q's nearest item b1 belongs to a tight cluster of 5 that does not have q among its 5 nearest;
    q's true matches (a tight cluster of 3) do. With k1 = 4 the Jaccard term pushes b1 behind them."""
    gp = np.array([1] * 3 + [2] * 5 + [3] * 5)
    G = len(gp)
    D = np.ones((G, G))
    for p in (1, 2, 3):
        D[np.ix_(gp == p, gp == p)] = 0.1
    D[np.ix_(gp == 1, gp == 2)] = D[np.ix_(gp == 2, gp == 1)] = 0.9
    np.fill_diagonal(D, 0)
    qd = np.where(gp == 1, 0.5, np.where(gp == 2, 0.8, 1.0))
    qd[3] = 0.4  # the impostor b1
    s = SS.assemble_similarity_set(1 - qd[None], np.ones((1, 1)), 1 - D, [1], [0], gp, np.ones(G, int))
    params = {"k1": 4, "k2": 1, "lambda_value": 0.3}
    cmc, mAP = SS.evaluate_set(s, "torchreid")
    cmc_r, mAP_r = SS.evaluate_set(s, "torchreid", True, params)
    assert cmc[0] == 0 and mAP == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert cmc_r[0] == 1 and mAP_r == pytest.approx(1.0)


def test_result_rows_labels_and_units():
    sets = {"learned": _random_set(0), "mean": _random_set(1)}
    df = R.result_rows(sets, ("torchreid", "mars_official"), LAMBDA1 | {"lambda_value": 0.3})
    assert len(df) == 8
    assert set(df["model"]) == set(R.OUR_MODELS.values())
    row = df[(df["method"] == "mean") & (df["protocol"] == "torchreid") & ~df["reranking"]].iloc[0]
    cmc, mAP = SS.evaluate_set(sets["mean"], "torchreid")
    assert row["mAP"] == pytest.approx(100 * mAP) and row["R1"] == pytest.approx(100 * cmc[0])
    assert np.isnan(row["R20"])  # gallery of 12 < rank 20
    with pytest.raises(ValueError, match="protocol"):
        R.result_rows(sets, ("official",))
    with pytest.raises(ValueError, match="sets"):
        R.result_rows({})


# --------------------------------------------------------------------------- #
# PRID2011: 10 splits
# --------------------------------------------------------------------------- #
def test_split_results_mean_and_std_over_ten_splits():
    cfg = get_config("smoke")
    rng = np.random.default_rng(0)
    cmcs = np.sort(rng.random((10, 20)), axis=1)
    maps = rng.random(10)

    def run_split(k):
        return pd.DataFrame(
            [
                {
                    "dataset": "prid2011",
                    "source": "ours (PRID2011, paper profile)",
                    "method": "learned",
                    "model": "Ours (learned aggregation)",
                    "protocol": "torchreid",
                    "reranking": False,
                    "mAP": 100 * maps[k],
                    "R1": 100 * cmcs[k, 0],
                    "R5": 100 * cmcs[k, 4],
                    "R20": 100 * cmcs[k, 19],
                    "cmc": cmcs[k],
                }
            ]
        )

    long = R.split_results(cfg, 10, run_split=run_split, progress=False)
    assert sorted(long["split"]) == list(range(10))
    out = R.summarize_split_results(long)
    assert len(out) == 1
    r = out.iloc[0]
    assert r["splits"] == 10
    assert r["mAP"] == pytest.approx(100 * maps.mean()) and r["mAP std"] == pytest.approx(100 * maps.std())
    assert r["R5"] == pytest.approx(100 * cmcs[:, 4].mean()) and r["R5 std"] == pytest.approx(100 * cmcs[:, 4].std())
    assert r["source"] == "ours (PRID2011, paper profile, mean ± std over 10 splits)"
    # beside Table 5: the paper's columns plus our std columns (NaN for the paper)
    tab = C.comparison_table(5, out)
    assert list(tab.columns) == [
        "source",
        "model",
        "protocol",
        "R1",
        "R5",
        "R20",
        "R1 std",
        "R5 std",
        "R20 std",
        "reranking",
    ]
    assert tab["R1 std"].iloc[:-1].isna().all() and tab["R1 std"].iloc[-1] > 0


def test_split_results_bad_input():
    cfg = get_config("smoke")
    with pytest.raises(ValueError, match="num_splits"):
        R.split_results(cfg, 0, run_split=lambda k: None)
    with pytest.raises(ValueError, match="missing columns"):
        R.summarize_split_results(pd.DataFrame({"split": [0], "mAP": [1.0]}))
    twice = pd.concat([_ours_rows().assign(split=0)] * 2)
    with pytest.raises(ValueError, match="split repeated"):
        R.summarize_split_results(twice)


# --------------------------------------------------------------------------- #
# what we had / did not have
# --------------------------------------------------------------------------- #
def _tree(root, *dirs):
    for d in dirs:
        (root / d).mkdir(parents=True)
    return str(root)


def test_availability_synthetic():
    a = D.data_availability(get_config("smoke"))
    assert a.available and a.table == 3 and a.had == ("synthetic",)
    assert a.missing == ("mars", "dukemtmc-videoreid", "prid2011")
    assert a.dataset == "synthetic" and a.root is None and a.problem is None
    unavailable = D.DataAvailability("synthetic", None, False, None, (), a.missing, "x")
    assert R.measure(get_config("smoke"), availability=unavailable) is None


@pytest.mark.parametrize(
    "name,dirs,table",
    [
        ("mars", ("info", "bbox_test"), 3),
        ("dukemtmc-videoreid", ("query", "gallery"), 4),
        ("prid2011", ("multi_shot",), 5),
    ],
)
def test_availability_real_dataset(tmp_path, name, dirs, table):
    cfg = get_config("paper", dataset=name, data_root=_tree(tmp_path / name, *dirs))
    a = D.data_availability(cfg)
    assert a.available and a.had == (name,) and a.table == table and a.problem is None
    others = [d for d in D.PAPER_DATASETS if d != name]
    assert a.missing == tuple(others)
    assert a.dataset == name and a.root == str(tmp_path / name)


def test_availability_missing_data(tmp_path):
    a = D.data_availability(get_config("paper", dataset="mars"))
    assert not a.available and a.table is None and a.had == ()
    assert "no data root" in a.problem and a.missing == D.PAPER_DATASETS
    assert R.measure(get_config("paper", dataset="mars")) is None  # nothing to run, no error
    b = D.data_availability(get_config("paper", dataset="prid", data_root=_tree(tmp_path / "p", "cam_a")))
    assert not b.available and "multi_shot/" in b.problem
    c = D.data_availability(get_config("paper", dataset="duke", data_root=str(tmp_path / "nope")))
    assert c.dataset == "dukemtmc-videoreid" and "not a directory" in c.problem
    with pytest.raises(ValueError, match="dataset"):
        D.data_availability(get_config("paper", dataset="market1501"))


def test_protocols_and_labels():
    assert D.default_protocols("synthetic") == ("torchreid", "mars_official")
    assert D.default_protocols("prid") == ("torchreid",)
    assert R.ours_source(get_config("smoke"), "synthetic") == "ours (synthetic benchmark, smoke profile)"


# --------------------------------------------------------------------------- #
# re-ranking gains and the figure
# --------------------------------------------------------------------------- #
def test_reranking_gains_paper_pairs_and_ours():
    g = C.reranking_gains(_ours_rows(), paper.paper_table(3))
    pairs = g[g["source"] == "paper (MARS)"].set_index("model")
    assert list(pairs.index) == ["PABR (2018)", "STA (2019)", "Ours (paper)"]
    assert pairs.loc["Ours (paper)", "mAP"] == pytest.approx(83.3 - 75.9)
    ours = g[g["source"].str.startswith("ours")]
    assert len(ours) == 4  # 2 methods x 2 conventions
    assert ours["mAP"].tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])  # made-up rows: +1 each
    with pytest.raises(ValueError, match="one row with and one without"):
        C.reranking_gains(pd.concat([_ours_rows(), _ours_rows()]))


def test_plot_comparison():
    import matplotlib.pyplot as plt

    from reid_utils.viz.comparison import plot_comparison

    ours = _ours_rows()
    fig = plot_comparison(ours, C.reranking_gains(ours, paper.paper_table(3)))
    assert len(fig.axes) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="ours"):
        plot_comparison(ours.iloc[:0])


def test_reranking_agreement_is_computed_from_the_numbers():
    ours = _ours_rows()
    sel = (ours["method"] == "learned") & ours["reranking"]
    ours.loc[sel & (ours["protocol"] == "torchreid"), "mAP"] -= 3.0  # gain -2 under torchreid
    ours.loc[sel & (ours["protocol"] == "mars_official"), "mAP"] -= 1.0  # gain 0 under official
    agree = C.reranking_agreement(C.reranking_gains(ours, paper.paper_table(3)))
    assert agree[["metric", "protocol"]].values.tolist() == [
        ["mAP", "torchreid"],
        ["mAP", "mars_official"],
        ["R1", "torchreid"],
        ["R1", "mars_official"],
    ]
    assert agree["paper"].tolist() == pytest.approx([83.3 - 75.9] * 2 + [83.4 - 82.7] * 2)
    assert agree["ours"].tolist() == pytest.approx([-2.0, 0.0, 1.0, 1.0])
    assert agree["verdict"].tolist() == ["disagrees", "no change", "agrees", "agrees"]
    assert C.reranking_agreement(pd.DataFrame()).empty
    assert C.reranking_agreement(C.reranking_gains(None, paper.paper_table(3))).empty  # no rows of ours


def test_plot_comparison_paper_pairs_only():
    import matplotlib.pyplot as plt

    from reid_utils.viz.comparison import plot_comparison

    fig = plot_comparison(None, C.reranking_gains(None, paper.paper_table(3)))
    assert len(fig.axes) == 1
    plt.close(fig)
