"""Tests of reid_utils.training.loop: the one training loop of the I3D and of the aggregators."""

import numpy as np
import pytest
import torch

from reid_utils.training import aggregator, loop


def _problem(seed=0):
    """A linear regression with per-iteration batches drawn from the iteration index."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.3), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, gamma=0.5)

    def batches(its):
        for it in its:
            g = torch.Generator().manual_seed(it)
            yield torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)

    def step(batch):
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()  # dropout draws from torch's global RNG
        return loss, {"lr": opt.param_groups[0]["lr"]}

    return model, opt, sched, batches, step


def _run(ck=None, callback=None, iterations=7, **kw):
    model, opt, sched, batches, step = _problem()
    evaluate = lambda: {"w": float(model[0].weight.sum()), "training": float(model.training)}  # noqa: E731
    kw = dict(scheduler=sched, checkpoint=ck, evaluate=evaluate, eval_every=3, callback=callback, progress=False, **kw)
    return model, loop.run_loop("fit", model, opt, batches, step, iterations, **kw)


class Stop(Exception):
    pass


def test_history_evaluation_and_schedule():
    model, hist = _run()
    assert [r["iteration"] for r in hist] == list(range(1, 8))
    assert [("w" in r) for r in hist] == [False, False, True, False, False, True, True]  # every 3 and the last
    assert all(r["training"] == 0.0 for r in hist if "w" in r)  # evaluated in eval mode ...
    assert model.training  # ... and back to train mode
    assert [r["lr"] for r in hist] == [1e-2] * 3 + [5e-3] * 3 + [2.5e-3]
    assert list(hist[0]) == ["iteration", "loss", "lr", "seconds"]


@pytest.mark.parametrize("at_end", [False, True])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, at_end):
    ref_model, ref = _run()

    def stop_at_5(n, row):
        if n == 5:
            raise Stop

    ck = loop.Checkpoint(tmp_path / "ck.pt", every=2, at_end=at_end, rng=True)
    torch.manual_seed(123)  # the global RNG moves on; the checkpoint restores it
    with pytest.raises(Stop):
        _run(ck, callback=stop_at_5)
    assert torch.load(ck.path, weights_only=False)["iteration"] == 4
    seen = []
    model, hist = _run(ck, callback=lambda n, r: seen.append(n))
    assert seen == [5, 6, 7]
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(hist) == strip(ref)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.load(ck.path, weights_only=False)["iteration"] == (7 if at_end else 6)
    if at_end:  # a finished checkpoint: loaded, no step runs
        model, again = _run(ck, callback=lambda n, r: pytest.fail("trained again"))
        assert strip(again) == strip(ref)


def test_checkpoint_of_another_run_and_bad_files(tmp_path):
    ck = loop.Checkpoint(tmp_path / "ck.pt", every=2, at_end=True, extra={"lr": 1.0})
    _run(ck, iterations=2)
    with pytest.raises(ValueError, match="another run"):
        _run(loop.Checkpoint(ck.path, every=2, extra={"lr": 2.0}))
    with pytest.raises(ValueError, match="beyond"):
        _run(ck, iterations=1)
    ck.path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        _, hist = _run(ck, iterations=2)
    assert len(hist) == 2


def test_non_finite_loss_is_an_error():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    calls = []

    def step(x):
        calls.append(1)
        return model(x).sum() * (float("nan") if len(calls) == 3 else 1.0), {}

    with pytest.raises(FloatingPointError, match=r"^fit: non-finite loss at iteration 3$"):
        loop.run_loop("fit", model, opt, lambda its: (torch.ones(1, 2) for _ in its), step, 3, progress=False)


def test_aggregator_training_uses_the_loop(monkeypatch):
    """train_aggregator goes through run_loop (tests/test_train.py checks train_i3d)."""
    seen = []

    def spy(name, *a, **k):
        seen.append(name)
        return loop.run_loop(name, *a, **k)

    monkeypatch.setattr(aggregator, "run_loop", spy)
    feats, pids = torch.randn(12, 2, 4), np.repeat(np.arange(4), 3)
    model = aggregator.build_aggregator("topt-eval", 4, t_percent=50)
    aggregator.train_aggregator(model, feats, pids, 2, 2, 2, 1e-2, 0.3, 0, progress=False)
    with pytest.raises(FloatingPointError, match="^train_aggregator: non-finite loss at iteration 1$"):
        aggregator.train_aggregator(model, feats * float("nan"), pids, 2, 2, 2, 1e-2, 0.3, 0, progress=False)
    assert seen == ["train_aggregator", "train_aggregator"]
