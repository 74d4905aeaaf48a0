"""Tests for reid_utils.models.aggregation (Eqs. 1-4, Eq. 9)."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reid_utils.models.aggregation import LearnedClipAggregator, MeanFeatureAggregator, TopTAggregator, top_t_count

D, H = 12, 10
f64 = torch.float64


def _randomise_bn(model):
    """Non-trivial BatchNorm statistics and affine parameters (what training leaves)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    return model


def _learned(seed=0):
    torch.manual_seed(seed)
    return _randomise_bn(LearnedClipAggregator(D, H).to(f64)).eval()


def _pairs(Q, G, M, seed=0, Mg=None):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(Q, M, D, generator=gen, dtype=f64)
    g = torch.randn(G, Mg or M, D, generator=gen, dtype=f64)
    return q, g


def _expand(q, g):
    return q.repeat_interleave(g.shape[0], 0), g.repeat(q.shape[0], 1, 1)


def _pair_cos(fq, fg):
    return torch.einsum("bid,bjd->bij", F.normalize(fq, dim=-1), F.normalize(fg, dim=-1)).flatten(1)


@pytest.mark.parametrize("training", [False, True])
def test_eq3_equals_eq4(training):
    model = _learned()
    model.train(training)
    fq, fg = _pairs(6, 6, 3)[0], _pairs(6, 6, 3, seed=5)[1]
    s, alpha = model(fq, fg)
    assert alpha.shape == (6, 9) and bool((alpha > 0).all())
    eq3 = (alpha * _pair_cos(fq, fg)).sum(1) / alpha.sum(1)
    assert torch.allclose(s, eq3, atol=1e-12)


def test_alpha1_is_g_of_minus_c1():
    model = _learned()
    fq, fg = _pairs(4, 4, 3)
    with torch.no_grad():
        _, alpha = model(fq, fg)
        c1 = F.normalize(fq[:, 0], dim=-1) * F.normalize(fg[:, 0], dim=-1)
        assert torch.allclose(alpha[:, 0], model.importance_net(-c1).reshape(-1), atol=1e-12)


class _Const(nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 1), 2.5, dtype=x.dtype)


def test_constant_importance_gives_plain_mean_of_pair_cosines():
    model = LearnedClipAggregator(D, H).to(f64)
    model.importance_net = _Const()
    fq, fg = _pairs(5, 5, 4, Mg=3)
    s, alpha = model(fq, fg)
    assert alpha.shape == (5, 12)
    assert torch.allclose(s, _pair_cos(fq, fg).mean(1), atol=1e-12)


def test_visiting_order_is_row_major():
    # A constant g that records its inputs x_t = r_{t-1} - c_t; with equal alphas
    # r_{t-1} is the plain mean of c_1..c_{t-1} (r_0 = 0), so c_t can be recovered.
    class Recorder(_Const):
        def __init__(self):
            super().__init__()
            self.inputs = []

        def forward(self, x):
            self.inputs.append(x.detach().clone())
            return super().forward(x)

    model = LearnedClipAggregator(D, H).to(f64)
    model.importance_net = Recorder()
    fq, fg = _pairs(1, 1, 2, Mg=3)
    model(fq, fg)
    nq, ng = F.normalize(fq[0], dim=-1), F.normalize(fg[0], dim=-1)
    r = torch.zeros(D, dtype=f64)
    for t, x in enumerate(model.importance_net.inputs):
        c_t = r - x[0]
        i, j = divmod(t, 3)
        assert torch.allclose(c_t, nq[i] * ng[j], atol=1e-12), f"step {t}"
        r = r + (c_t - r) / (t + 1)
    assert len(model.importance_net.inputs) == 6


def test_fast_path_equals_reference_recurrence():
    model = _learned()
    q, g = _pairs(5, 7, 4, Mg=3)
    ref = model.similarity_matrix(q, g, chunk=4, progress=False, fast=False)
    for chunk in (3, 1000):  # tiling over gallery blocks and over query rows
        fast = model.similarity_matrix(q, g, chunk=chunk, progress=False)
        assert fast.shape == (5, 7)
        assert torch.allclose(fast, ref, rtol=0, atol=1e-12)


def test_learned_similarity_matrix_equals_pairwise_forward():
    model = _learned()
    model.train()
    q, g = _pairs(3, 4, 3)
    S = model.similarity_matrix(q, g, progress=False)
    assert model.training, "similarity_matrix must restore the training flag"
    model.eval()
    with torch.no_grad():
        s, _ = model(*_expand(q, g))
    assert torch.allclose(S, s.view(3, 4), atol=1e-12)


@pytest.mark.parametrize("mode", ["eval", "train-eval"])
def test_topt_similarity_matrix_equals_pairwise_forward(mode):
    torch.manual_seed(0)
    model = TopTAggregator(D, 30, mode=mode).to(f64)
    with torch.no_grad():
        model.proj.weight.add_(0.3 * torch.randn(D, D, dtype=f64))
    q, g = _pairs(3, 5, 4)
    S = model.similarity_matrix(q, g, chunk=4, progress=False)
    model.eval()
    with torch.no_grad():
        s, w = model(*_expand(q, g))
    assert torch.allclose(S, s.view(3, 5), atol=1e-12)
    assert torch.allclose(w.sum(1), torch.ones(15, dtype=f64))
    model.train()  # batch_similarity in training mode agrees with forward
    assert torch.allclose(model.batch_similarity(q, g), model(*_expand(q, g))[0].view(3, 5))


def test_mean_feature_similarity_matrix_equals_pairwise_forward():
    model = MeanFeatureAggregator(D)
    q, g = _pairs(3, 4, 5)
    S = model.similarity_matrix(q, g, progress=False)
    s, w = model(*_expand(q, g))
    assert torch.allclose(S, s.view(3, 4), atol=1e-12)
    # the weights reproduce the similarity from the pair cosines
    assert torch.allclose((w * _pair_cos(*_expand(q, g))).sum(1), s, atol=1e-12)
    mq = F.normalize(F.normalize(q, dim=-1).mean(1), dim=-1)
    mg = F.normalize(F.normalize(g, dim=-1).mean(1), dim=-1)
    assert torch.allclose(S, mq @ mg.t(), atol=1e-12)


def test_topt_100_is_mean_projected_cosine_and_monotone_in_t():
    torch.manual_seed(0)
    base = TopTAggregator(D, 100).to(f64)
    with torch.no_grad():
        base.proj.weight.add_(0.3 * torch.randn(D, D, dtype=f64))
        base.proj.bias.normal_(0, 0.1)
    base.eval()
    fq, fg = _pairs(6, 6, 4)
    pq = F.normalize(base.proj(fq), dim=-1)
    pg = F.normalize(base.proj(fg), dim=-1)
    mean_cos = torch.einsum("bid,bjd->bij", pq, pg).flatten(1).mean(1)
    with torch.no_grad():
        s100, _ = base(fq, fg)
        assert torch.allclose(s100, mean_cos, atol=1e-12)
        prev = None
        for t in range(5, 101, 5):
            base.t_percent = float(t)
            s, _ = base(fq, fg)
            if prev is not None:
                assert bool((s <= prev + 1e-12).all())
            prev = s


def test_top_t_count_rounding():
    assert top_t_count(10, 64) == 6 and top_t_count(50, 64) == 32 and top_t_count(100, 64) == 64
    assert top_t_count(1, 16) == 1  # at least one pair
    assert top_t_count(12.5, 16) == 2  # 2.0
    assert top_t_count(15.625, 16) == 3  # 2.5 rounds half up


def test_train_eval_gradients_reach_only_selected_pairs():
    torch.manual_seed(0)
    model = TopTAggregator(D, 10, mode="train-eval").to(f64).train()
    fq, fg = _pairs(2, 2, 4)
    fq.requires_grad_(True)
    cos = model.pair_cosines(fq, fg)
    cos.retain_grad()
    s, w = model._aggregate(cos)
    s.sum().backward()
    selected = w > 0
    assert int(selected.sum(1)[0]) == top_t_count(10, 16) == 2
    assert bool((cos.grad[~selected] == 0).all()) and bool((cos.grad[selected] != 0).all())
    # query clips that take part in no selected pair receive no gradient at all
    used = selected.view(2, 4, 4).any(dim=2)  # (B, Mq)
    gnorm = fq.grad.norm(dim=-1)
    assert bool((gnorm[~used] == 0).all()) and bool((gnorm[used] > 0).all())


def test_eval_variant_trains_on_all_pairs():
    model = TopTAggregator(D, 10, mode="eval").to(f64).train()
    fq, fg = _pairs(2, 2, 4)
    cos = model.pair_cosines(fq, fg)
    cos.retain_grad()
    s, w = model._aggregate(cos)
    s.sum().backward()
    assert torch.allclose(s, cos.mean(1)) and bool((cos.grad != 0).all())


def test_bad_inputs_raise():
    model = LearnedClipAggregator(D, H)
    with pytest.raises(ValueError, match="fq"):
        model(torch.zeros(2, 3, D + 1), torch.zeros(2, 3, D))
    with pytest.raises(ValueError, match="same number of pairs"):
        model(torch.zeros(2, 3, D), torch.zeros(3, 3, D))
    with pytest.raises(ValueError, match="q must"):
        model.similarity_matrix(torch.zeros(3, D), torch.zeros(2, 3, D), progress=False)
    with pytest.raises(ValueError, match="t_percent"):
        TopTAggregator(D, 0)
    with pytest.raises(ValueError, match="mode"):
        TopTAggregator(D, 10, mode="train")


def test_running_bn_statistics_weigh_all_steps_alike():
    torch.manual_seed(0)
    model = LearnedClipAggregator(D, H).to(f64).train()
    bn = model.importance_net[1]
    means = []
    bn.register_forward_hook(lambda mod, inp, out: means.append(inp[0].mean(0).detach()))
    fq, fg = _pairs(8, 8, 3)
    model(fq, fg)
    T = 9
    assert len(means) == T
    m = model.bn_momentum / T
    expected = torch.zeros(H, dtype=f64)
    for mu in means:
        expected = (1 - m) * expected + m * mu
    assert torch.allclose(bn.running_mean, expected, atol=1e-12)
