"""Tests of reid_utils.training.i3d: a tiny run, the cache, and exact resumption after an interruption."""

import numpy as np
import pytest
import torch
from test_features import make_tiny_dataset

from reid_utils.config import get_config
from reid_utils.training import TrainedModel
from reid_utils.training import i3d as T


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def _cfg(root, **train):
    t = dict(P=2, K=2, iterations=6, eval_every=3, lr=1e-3, clip_len=4, sampling="consec")
    t.update(train)
    return get_config(
        "smoke", artifacts_dir=str(root), device="cpu", model={"input_height": 32, "input_width": 16}, train=t
    )


class Interrupt(Exception):
    pass


def test_train_history_cache_and_model(tiny, tmp_path):
    cfg = _cfg(tmp_path)
    run = T.train_i3d(cfg, tiny, progress=False)
    assert isinstance(run, TrainedModel)
    model, hist = run.model, run.history
    assert list(hist["iteration"]) == list(range(1, 7))
    assert np.isfinite(hist["loss"]).all()
    assert np.allclose(hist["loss"], hist["triplet"] + hist["softmax"], atol=1e-5)
    evald = hist.dropna(subset=["mAP"])
    assert list(evald["iteration"]) == [3, 6]
    assert ((evald["mAP"] > 0) & (evald["mAP"] <= 1)).all()
    # step schedule: lr x gamma from iteration floor(0.5 * 6) + 1 and floor(0.75 * 6) + 1
    assert np.allclose(hist["lr"], [1e-3, 1e-3, 1e-3, 1e-4, 1e-5, 1e-5])
    assert not model.training and run.key == T.train_key(cfg, tiny)
    assert not hasattr(model, "reid_key") and not hasattr(model, "history")
    assert model.feat_dim == cfg.model.feat_dim
    assert run.seconds > 0 and run.info["clip_len"] == 4 and run.info["init_key"] is None
    # a second call loads the cached model: no training (the callback never fires)
    calls = []
    run2 = T.train_i3d(cfg, tiny, progress=False, callback=lambda n, r: calls.append(n))
    assert calls == [] and run2.history.equals(hist) and run2.key == run.key
    for (k, v), v2 in zip(model.state_dict().items(), run2.model.state_dict().values()):
        assert torch.equal(v, v2), k
    assert not list(cfg.cache_root.glob("i3d-checkpoint-*"))  # resume point removed when done
    # another clip length is another model
    assert T.train_key(cfg, tiny, 8) != T.train_key(cfg, tiny, 4)


def test_training_reduces_loss(tiny, tmp_path):
    cfg = _cfg(tmp_path, iterations=30, eval_every=0, lr=3e-3, lr_milestones=(0.9,))
    hist = T.train_i3d(cfg, tiny, progress=False).history
    first, last = hist["loss"].iloc[:5].mean(), hist["loss"].iloc[-5:].mean()
    assert last < first


def test_resume_after_interruption_reproduces_uninterrupted_run(tiny, tmp_path):
    ref = T.train_i3d(_cfg(tmp_path / "a"), tiny, progress=False, checkpoint_every=2)

    cfg = _cfg(tmp_path / "b")

    def stop_at_5(n, row):
        if n == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        T.train_i3d(cfg, tiny, progress=False, checkpoint_every=2, callback=stop_at_5)
    assert len(list(cfg.cache_root.glob("i3d-checkpoint-*.pt"))) == 1  # saved at iteration 4
    seen = []
    run = T.train_i3d(cfg, tiny, progress=False, checkpoint_every=2, callback=lambda n, r: seen.append(n))
    assert seen == [5, 6]  # resumed, not restarted
    cols = ["iteration", "loss", "triplet", "softmax", "lr", "mAP", "rank1"]
    assert run.history[cols].equals(ref.history[cols])
    for (k, v), v2 in zip(ref.model.state_dict().items(), run.model.state_dict().values()):
        assert torch.equal(v, v2), k


def test_corrupt_checkpoint_is_ignored(tiny, tmp_path):
    cfg = _cfg(tmp_path, iterations=2, eval_every=0)
    key = T.train_key(cfg, tiny)
    from reid_utils.cache import ArtifactCache

    p = ArtifactCache(cfg.cache_root).path("i3d-checkpoint", key)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        hist = T.train_i3d(cfg, tiny, progress=False).history
    assert list(hist["iteration"]) == [1, 2]


def test_training_goes_through_the_shared_loop(tiny, tmp_path, monkeypatch):
    """train_i3d's iterations run in reid_utils.training.loop.run_loop (as train_aggregator's)."""
    from reid_utils.training import i3d_run, loop

    seen = []

    def spy(name, *a, **k):
        seen.append((name, k["checkpoint"].rng, k["scheduler"] is not None))
        return loop.run_loop(name, *a, **k)

    monkeypatch.setattr(i3d_run, "run_loop", spy)
    T.train_i3d(_cfg(tmp_path, iterations=1, eval_every=0), tiny, progress=False)
    assert seen == [("train_i3d", True, True)]


def test_bad_configs(tiny, tmp_path):
    with pytest.raises(ValueError, match="width_mult"):
        T.build_backbone(get_config("smoke", model={"pretrained": True}))
    with pytest.raises(ValueError, match="feat_dim"):
        T.build_backbone(get_config("smoke", model={"feat_dim": 999}))


def test_warm_started_ablation_models(tiny, tmp_path):
    """finetune_iterations > 0: every L_train model = the shared trunk + a short phase at L_train."""
    import dataclasses

    from reid_utils.experiments import i3d_ablations as ex

    cfg = _cfg(tmp_path, iterations=4, eval_every=0)
    cfg = dataclasses.replace(cfg, ablation=dataclasses.replace(cfg.ablation, finetune_iterations=2, finetune_lr=1e-4))
    runs = ex.train_models(cfg, tiny, [4, 8])
    trunk = T.train_i3d(cfg, tiny, 4, progress=False)  # cached: the shared trunk
    for L in (4, 8):
        run = runs[L]
        hist = run.history
        assert list(hist["phase"]) == ["trunk"] * 4 + ["finetune"] * 2
        assert list(hist["iteration"]) == [1, 2, 3, 4, 5, 6]
        assert float(hist["lr"].iloc[-2]) == pytest.approx(1e-4)
        assert run.key != trunk.key and run.info["trunk_key"] == trunk.key
        assert run.key == T.train_key(T.finetune_config(cfg), tiny, L, init_key=trunk.key)
    assert runs[4].key != runs[8].key
    again = T.get_trained_i3d(cfg, 8, tiny, progress=False)
    assert again.key == runs[8].key and again.history.equals(runs[8].history)
    # the warm start is part of the key: the same short phase from scratch is another model
    short = T.finetune_config(cfg)
    assert T.train_key(short, tiny, 8) != runs[8].key
    # fine-tuned weights stay close to the trunk's (2 small steps), unlike a fresh init
    b, f = trunk.model.state_dict(), runs[8].model.state_dict()
    fresh = T.build_backbone(cfg).state_dict()
    w = "Conv3d_1a_7x7.conv3d.weight"
    assert (f[w] - b[w]).norm() < 0.5 * (fresh[w] - b[w]).norm()
    # a bare model as the warm start needs its key; with it, it is the TrainedModel's run
    with pytest.raises(ValueError, match="init_key"):
        T.train_i3d(cfg, tiny, 8, init=T.build_backbone(cfg))
    bare = T.train_i3d(short, tiny, 8, progress=False, init=trunk.model, init_key=trunk.key)
    assert bare.key == runs[8].key
