"""Tests for reid_utils.agg_train (Sec. 3.2, aggregator training)."""
import numpy as np
import pytest
import torch

from reid_utils.agg_train import build_aggregator, corrupting_transform, train_aggregator

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


@pytest.mark.parametrize("kind", ["learned", "topt-eval", "topt-train-eval"])
def test_training_reduces_loss(kind):
    torch.set_num_threads(1)
    _, hist = _run(kind, 40)
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
    torch.set_num_threads(1)
    feats, _ = _bank(seed=1)                   # held-out sequences
    untrained = build_aggregator("learned", D, hidden=16, dropout=0.1, seed=0)
    before = _junk_ratio(untrained, feats)
    model, _ = _run("learned", 40)
    after = _junk_ratio(model, feats)
    assert after < 1.0 and after < before, (before, after)


def test_resume_reproduces_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
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
    model, hist = _run("learned", 6, ckpt_path=ck, ckpt_every=2)   # resumes at iteration 4
    pd_equal = hist.reset_index(drop=True).equals(ref.reset_index(drop=True))
    assert pd_equal, (hist, ref)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)

    def never(idx, x, rng):
        raise AssertionError("a finished checkpoint must not train again")

    again, hist2 = _run("learned", 6, ckpt_path=ck, batch_transform=never)
    assert hist2.equals(hist)
    with pytest.raises(ValueError, match="another run"):
        _run("learned", 6, ckpt_path=ck, lr=5e-3)
    with pytest.raises(ValueError, match="another run"):   # a different model kind
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
        train_aggregator(build_aggregator("topt-eval", D), feats, pids[:-1], 2, 3, 2, 1e-3, 0.3, 0,
                         progress=False)
