"""Tests for reid_utils.training.aggregator (Sec. 3.2, aggregator training)."""

import numpy as np
import pytest
import torch

from reid_utils.models.losses import batch_hard_triplet_similarity
from reid_utils.training.aggregator import (
    build_aggregator,
    corrupting_transform,
    hardest_pairs,
    mined_triplet_loss,
    resolve_mining,
    train_aggregator,
)

D, M = 16, 4


def _bank(num_ids=6, per_id=3, seed=0):
    """Identity clips are orthogonal prototypes + noise; up to half the clips of a
    sequence are 'corrupted': a junk direction shared by all identities, so
    corrupted-corrupted pairs look alike across identities. Uniform averaging
    confuses identities; weighting clean pairs up separates them."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.eye(D)[:num_ids]
    junk = torch.zeros(D)
    junk[-1] = 1.0
    feats, pids = [], []
    for p in range(num_ids):
        for _ in range(per_id):
            x = protos[p] + 0.1 * torch.randn(M, D, generator=gen)
            n_bad = int(torch.randint(0, M // 2 + 1, (1,), generator=gen))
            x[:n_bad] = junk + 0.3 * torch.randn(n_bad, D, generator=gen)
            feats.append(x[torch.randperm(M, generator=gen)])
            pids.append(p)
    return torch.stack(feats), np.array(pids)


def _run(kind, iterations, seed=0, **kw):
    feats, pids = _bank()
    model = build_aggregator(kind, D, hidden=16, dropout=0.1, t_percent=50, seed=seed)
    args = dict(iterations=iterations, P=3, K=2, lr=1e-2, margin=0.3, seed=seed, progress=False)
    args.update(kw)
    return model, train_aggregator(model, feats, pids, **args)


@pytest.mark.parametrize(
    "kind,mining", [("learned", "hard"), ("learned", "full"), ("topt-eval", "auto"), ("topt-train-eval", "auto")]
)
def test_training_reduces_loss(kind, mining):
    _, hist = _run(kind, 40, mining=mining)
    assert list(hist["iteration"]) == list(range(1, 41))
    first, last = hist["loss"][:8].mean(), hist["loss"][-8:].mean()
    assert first > 0 and last < 0.5 * first, (first, last)


def _junk_ratio(model, feats):
    """Mean alpha of corrupted x corrupted clip pairs over that of the other pairs."""
    N = feats.shape[0]
    fq, fg = feats.repeat_interleave(N, 0), feats.repeat(N, 1, 1)
    model.eval()
    with torch.no_grad():
        _, alpha = model(fq, fg)
    bad = ((fq[:, :, None, -1] > 0.5) & (fg[:, None, :, -1] > 0.5)).flatten(1)
    return float(alpha[bad].mean() / alpha[~bad].mean())


def test_learned_aggregator_learns_to_downweight_corrupted_pairs():
    feats, _ = _bank(seed=1)  # held-out sequences
    untrained = build_aggregator("learned", D, hidden=16, dropout=0.1, seed=0)
    before = _junk_ratio(untrained, feats)
    model, _ = _run("learned", 40)
    after = _junk_ratio(model, feats)
    assert after < 1.0 and after < before, (before, after)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    ref_model, ref = _run("learned", 6)

    class Crash(Exception):
        pass

    calls = {"n": 0}

    def crash_at_5(idx, x, rng):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Crash
        return x

    ck = tmp_path / "agg.pt"
    with pytest.raises(Crash):
        _run("learned", 6, ckpt_path=ck, ckpt_every=2, batch_transform=crash_at_5)
    model, hist = _run("learned", 6, ckpt_path=ck, ckpt_every=2)  # resumes at iteration 4
    cols = [c for c in ref.columns if c != "seconds"]  # wall times differ, of course
    pd_equal = hist[cols].reset_index(drop=True).equals(ref[cols].reset_index(drop=True))
    assert pd_equal, (hist, ref)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)

    def never(idx, x, rng):
        raise AssertionError("a finished checkpoint must not train again")

    again, hist2 = _run("learned", 6, ckpt_path=ck, batch_transform=never)
    assert hist2.equals(hist)
    with pytest.raises(ValueError, match="another run"):  # other mining, other run
        _run("learned", 6, ckpt_path=ck, mining="full")
    with pytest.raises(ValueError, match="another run"):
        _run("learned", 6, ckpt_path=ck, lr=5e-3)
    with pytest.raises(ValueError, match="another run"):  # a different model kind
        _run("topt-eval", 6, ckpt_path=ck)


def test_eval_fn_history_columns():
    calls = []

    def eval_fn(model):
        calls.append(model.training)
        return {"mAP": 0.5}

    _, hist = _run("topt-eval", 4, eval_fn=eval_fn, eval_every=2)
    assert calls == [False, False]
    assert hist["mAP"].notna().tolist() == [False, True, False, True]


def test_corrupting_transform_draws_fresh_plans():
    clean = torch.zeros(10, M, 3)
    bad = torch.ones(10, M, 3)
    tf = corrupting_transform(bad, max_corrupted=3)
    rng = np.random.default_rng(0)
    idx = np.arange(10)
    a, b = tf(idx, clean, rng), tf(idx, clean, rng)
    counts = a[..., 0].sum(1)
    assert a.shape == clean.shape and int(counts.max()) <= 3 and int(counts.min()) >= 0
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match="max_corrupted"):
        corrupting_transform(bad, max_corrupted=M + 1)


def test_bad_inputs():
    feats, pids = _bank()
    with pytest.raises(ValueError, match="no trainable"):
        train_aggregator(build_aggregator("mean", D), feats, pids, 2, 3, 2, 1e-3, 0.3, 0, progress=False)
    with pytest.raises(ValueError, match="pids"):
        train_aggregator(build_aggregator("topt-eval", D), feats, pids[:-1], 2, 3, 2, 1e-3, 0.3, 0, progress=False)
    with pytest.raises(ValueError, match="threads"):
        train_aggregator(build_aggregator("topt-eval", D), feats, pids, 2, 3, 2, 1e-3, 0.3, 0, threads=-1)


def _heldout_loss(model, feats, pids, margin=0.3):
    """Batch-hard loss of the whole bank as one batch, eval mode (no dropout)."""
    model.eval()
    with torch.no_grad():
        S = model.similarity_matrix(feats, feats, progress=False)
    return float(batch_hard_triplet_similarity(S, torch.as_tensor(pids), margin))


def test_hard_mining_selects_the_batch_hard_pairs():
    """Deterministic setting (no dropout, eval-mode BatchNorm, float64): the pairs
    mined by the fast eval path are those of the full B x B computation through
    forward, and the loss on them is the full batch-hard loss."""
    feats, pids = _bank(num_ids=5, per_id=3, seed=2)
    feats = feats.double()
    model = build_aggregator("learned", D, hidden=16, dropout=0.0, seed=3).double()
    with torch.no_grad():  # non-trivial running statistics, so eval BN is not the identity
        for bn in (model.importance_net[1], model.importance_net[5]):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    labels = torch.as_tensor(pids)
    S_full = model.batch_similarity(feats, feats)  # reference recurrence, all B^2 pairs
    pos_full, neg_full = hardest_pairs(S_full.detach(), labels)
    loss, info = mined_triplet_loss(model, feats, labels, margin=0.3)
    assert torch.equal(info["pos"], pos_full) and torch.equal(info["neg"], neg_full)
    assert not model.training  # mode restored after mining
    full_loss = batch_hard_triplet_similarity(S_full, labels, 0.3)
    assert torch.allclose(loss, full_loss, atol=1e-10), (loss, full_loss)
    # same gradients as the full computation
    g_mined = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    g_full = torch.autograd.grad(full_loss, list(model.parameters()), allow_unused=True)
    for a, b in zip(g_mined, g_full):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-9)
    # the selected pairs really are each anchor's hardest positive / negative
    same = labels[:, None] == labels[None, :]
    assert bool(same[torch.arange(len(labels)), info["pos"]].all())
    assert not bool(same[torch.arange(len(labels)), info["neg"]].any())


def test_hard_mined_training_beats_untrained_on_heldout():
    held, held_pids = _bank(seed=1)
    untrained = build_aggregator("learned", D, hidden=16, dropout=0.1, seed=0)
    before = _heldout_loss(untrained, held, held_pids)
    model, hist = _run("learned", 40, mining="hard")
    after = _heldout_loss(model, held, held_pids)
    assert after < before, (before, after)


def test_hardest_pairs_and_mining_modes():
    S = torch.tensor([[1.0, 0.2, 0.9, 0.1], [0.2, 1.0, 0.3, 0.8], [0.9, 0.3, 1.0, 0.4], [0.1, 0.8, 0.4, 1.0]])
    pos, neg = hardest_pairs(S, torch.tensor([0, 1, 1, 0]))
    assert pos.tolist() == [3, 2, 1, 0] and neg.tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="negative"):
        hardest_pairs(S, torch.zeros(4))
    assert resolve_mining(build_aggregator("learned", D, hidden=8), "auto") == "hard"
    assert resolve_mining(build_aggregator("topt-eval", D), "auto") == "full"
    with pytest.raises(ValueError, match="mining"):
        resolve_mining(build_aggregator("learned", D, hidden=8), "some")
