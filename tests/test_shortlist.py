"""Tests of the mean-feature shortlist + learned rescoring (``reid_utils.eval.shortlist``) and its
sweep over K (``reid_utils.experiments.scoring_at_scale``)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from reid_utils.eval import shortlist as SL
from reid_utils.eval.ranking import evaluate_rank
from reid_utils.experiments import scoring_at_scale as SAS
from reid_utils.experiments.clip_banks import ClipBanks
from reid_utils.models.aggregation import LearnedClipAggregator, MeanFeatureAggregator
from reid_utils.training.features import FeatureBank

D, H, M = 12, 10, 3


def _model(seed=0):
    torch.manual_seed(seed)
    m = LearnedClipAggregator(D, H)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.copy_(torch.randn(H, generator=gen) * 0.3)
                mod.running_var.copy_(torch.rand(H, generator=gen) + 0.5)
        for i in (0, 4, 8):
            m.importance_net[i].weight.mul_(3.0)  # alphas that vary: learned != mean ranking
    return m.eval()


def _banks(Q=6, G=15, seed=0, n_id=5):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_id, D, generator=gen)
    qp, gp = torch.arange(Q) % n_id, torch.arange(G) % n_id
    q = centres[qp][:, None] + 1.5 * torch.randn(Q, M, D, generator=gen)
    g = centres[gp][:, None] + 1.5 * torch.randn(G, M, D, generator=gen)
    return q, g, qp.numpy(), gp.numpy()


def _map(S, qp, gp):
    cmc, mAP = evaluate_rank(
        -S.double().numpy(), qp, gp, np.zeros(len(qp), dtype=np.int64), np.ones(len(gp), dtype=np.int64), max_rank=5
    )
    return mAP, cmc


def test_shape_and_dtype():
    q, g, *_ = _banks()
    S = SL.shortlist_similarity(_model(), q, g, 4)
    assert S.shape == (6, 15) and S.dtype == torch.float32 and bool(torch.isfinite(S).all())


def test_k_equal_gallery_is_the_full_scoring():
    model = _model()
    q, g, qp, gp = _banks()
    full = model.similarity_matrix(q, g, progress=False)
    S = SL.shortlist_similarity(model, q, g, g.shape[0], max_pairs=40)  # several query groups
    assert torch.allclose(S, full, rtol=0, atol=1e-6)
    assert torch.equal(S.argsort(dim=1, descending=True), full.argsort(dim=1, descending=True))
    assert _map(S, qp, gp)[0] == _map(full, qp, gp)[0]


def test_shortlisted_entries_rank_strictly_above_the_rest():
    model = _model()
    q, g, *_ = _banks()
    k = 4
    coarse = SL.mean_feature_similarity(q, g)
    idx = SL.shortlist_indices(coarse, k)
    S = SL.shortlist_similarity(model, q, g, k)
    full = model.similarity_matrix(q, g, progress=False)
    inside = torch.zeros_like(S, dtype=torch.bool).scatter_(1, idx, True)
    for i in range(S.shape[0]):
        assert S[i][inside[i]].min() > S[i][~inside[i]].max()
        # shortlist: the learned scores; the rest: the mean-feature order
        assert torch.allclose(S[i][inside[i]], full[i][inside[i]], atol=1e-6)
        rest = (~inside[i]).nonzero().flatten()
        assert torch.equal(S[i, rest].argsort(), coarse[i, rest].argsort())
    # the learned rescoring changes the order inside some shortlist (else the test is vacuous)
    assert not torch.equal(torch.gather(full, 1, idx).argsort(dim=1), torch.arange(k).expand(len(q), k))


def test_k1_keeps_the_mean_feature_top1():
    q, g, *_ = _banks()
    S = SL.shortlist_similarity(_model(), q, g, 1)
    mean = MeanFeatureAggregator(D).similarity_matrix(q, g, progress=False)
    assert torch.equal(S.argmax(dim=1), mean.argmax(dim=1))


@pytest.mark.parametrize("k", [0, -1, 16, 2.5, True, "3"])
def test_bad_k_raises(k):
    q, g, *_ = _banks()
    with pytest.raises(ValueError, match="k must be"):
        SL.shortlist_similarity(_model(), q, g, k)


def test_bad_inputs_raise():
    model = _model()
    q, g, *_ = _banks()
    with pytest.raises(ValueError, match="coarse must have shape"):
        SL.shortlist_similarity(model, q, g, 2, coarse=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="q must be"):
        SL.shortlist_similarity(model, q[0], g, 2)
    with pytest.raises(ValueError, match="max_pairs"):
        SL.shortlist_similarity(model, q, g, 2, max_pairs=0)


def test_query_groups_cover_every_shortlist_within_bounds():
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(30, generator=gen)[:5] for _ in range(11)])
    groups = SL._query_groups(idx, 30, max_pairs=60, max_waste=2.0, min_pairs=20)
    assert groups[0][0] == 0 and groups[-1][1] == 11
    for (s, e, u), nxt in zip(groups, groups[1:] + [(11, None, None)]):
        assert e == nxt[0]  # consecutive, no gaps
        assert set(idx[s:e].flatten().tolist()) <= set(u.tolist())  # union covers the rows
        assert e - s == 1 or ((e - s) * len(u) <= 60 and (len(u) <= 10 or (e - s) * len(u) <= 20))


def test_sweep_rows_and_ends():
    """shortlist_sweep on small fake banks: the mean-feature and full ends, the shortlists between."""
    from reid_utils.config import get_config

    q, g, qp, gp = _banks(Q=8, G=20)
    mk = lambda f, p, c: FeatureBank(f, p, c, None, {"key": "x"})  # noqa: E731
    clean = {
        "train": mk(g, gp, np.ones(len(gp), dtype=np.int64)),
        "query": mk(q, qp, np.zeros(len(qp), dtype=np.int64)),
        "gallery": mk(g, gp, np.ones(len(gp), dtype=np.int64)),
    }
    banks = ClipBanks(get_config("smoke", device="cpu"), clean)
    model = _model()
    df = SAS.shortlist_sweep(banks, model, [1, 5, 20], protocol="torchreid")
    assert list(df["mode"]) == ["mean-feature", "shortlist", "shortlist", "full"]
    assert list(df["K"]) == [0, 1, 5, 20] and list(df["pairs_rescored"]) == [0, 8, 40, 160]
    full_map = _map(model.similarity_matrix(q, g, progress=False), qp, gp)[0]
    mean_map = _map(SL.mean_feature_similarity(q, g), qp, gp)[0]
    assert df["mAP"].iloc[-1] == pytest.approx(full_map) and df["mAP"].iloc[0] == pytest.approx(mean_map)
    assert df["rank1"].iloc[1] == pytest.approx(df["rank1"].iloc[0])  # K = 1 keeps the mean top-1
    assert (df["seconds"] > 0).all() and df["time_vs_full"].iloc[-1] == 1.0
    # every K is a different shortlist: the rows of K = 5 are those of shortlist_similarity at K = 5
    mid = _map(SL.shortlist_similarity(model, q, g, 5), qp, gp)[0]
    assert df.loc[df["K"] == 5, "mAP"].iloc[0] == pytest.approx(mid)
    with pytest.raises(ValueError, match="k must be"):
        SAS.shortlist_sweep(banks, model, [21])


def test_recommend_k():
    import pandas as pd

    df = pd.DataFrame(
        {
            "mode": ["mean-feature", "shortlist", "shortlist", "shortlist", "full"],
            "K": [0, 1, 5, 10, 50],
            "mAP": [0.40, 0.41, 0.447, 0.46, 0.45],
            "rank1": [0.5, 0.5, 0.6, 0.6, 0.6],
            "seconds": [0.01, 0.1, 0.2, 0.4, 2.0],
        }
    )
    r = SAS.recommend_k(df, tol=0.005)
    assert r["K"] == 5 and r["speedup"] == pytest.approx(10.0)
    assert SAS.recommend_k(df, tol=0.0)["K"] == 10
    assert SAS.recommend_k(df.assign(mAP=[0.4, 0.1, 0.1, 0.1, 0.45]), tol=0.0)["K"] == 50  # only the full one
    with pytest.raises(ValueError, match="metric"):
        SAS.recommend_k(df, metric="nope")
