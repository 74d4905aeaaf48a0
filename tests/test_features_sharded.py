"""Feature extraction sharded across two gloo processes (reid_utils.training.sharding, used by
reid_utils.training.features) gives every rank the bank one process computes, bit for bit,
and writes the cache entry once.

Tolerance: none (``torch.equal``). Shard boundaries fall on whole batches of the
one-process run, so each forward pass sees exactly the clips it sees in one process, on
the same device type with the same thread count (1); the gather only copies float32 rows.
The hook records which tracklets each rank decoded, so the test also fails if the ranks do
not split the work (each computing everything would give equal banks too).
"""

import os
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fixtures_builders import free_port
from test_features import make_tiny_dataset

from reid_utils.config import get_config
from reid_utils.models.i3d import InceptionI3d
from reid_utils.training import features as F
from reid_utils.training.sharding import shard_bounds

SIZE = (32, 16)


def _hook(seen: list):
    def hook(frames, i, m):  # tracklet-dependent, so a wrong global index changes the features
        seen.append(i)
        return (255 - frames) if (i + m) % 3 == 0 else frames

    return hook


def _banks(net, tr, cache_root) -> dict:
    """The cases every process computes (same calls on every rank: they are collective)."""
    kw = dict(size=SIZE, progress=False)
    seen: list = []
    out = {
        # 11 tracklets, M = 2, 3 clips per forward: units of 3 tracklets, shards of 6 and 5
        "clips": F.extract_clip_features(net, tr, 2, 4, "clips", batch_size=3, num_workers=2, **kw),
        # M = 1, 2 clips per forward: units of 2 tracklets, shards of 6 and 5
        "random": F.extract_clip_features(
            net, tr, 1, 3, "random", seed=1, batch_size=2, frame_transform=_hook(seen), **kw
        ),
        "all": F.extract_clip_features(net, tr, 1, 4, "all", max_frames=4, **kw),
        "one": F.extract_clip_features(net, tr[:1], 2, 4, "clips", **kw),  # rank 1's shard is empty
    }
    model = {"input_height": SIZE[0], "input_width": SIZE[1]}
    cfg = get_config("smoke", artifacts_dir=str(cache_root), device="cpu", model=model)
    out["cached"] = F.get_features(cfg, net, tr, 2, 4, model_key="m0", progress=False, batch_size=2)
    out["reloaded"] = F.get_features(cfg, net, tr, 2, 4, model_key="m0", progress=False, batch_size=2)
    out["files"] = sorted(p.name for p in cfg.cache_root.glob("features-*.pt"))
    out["seen"] = sorted(seen)
    return out


def _worker(rank: int, world: int, port: int, root: str, blob: bytes) -> None:
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        tr, state = pickle.loads(blob)
        net = InceptionI3d(width_mult=0.125)
        net.load_state_dict(state)
        out = _banks(net.eval(), tr, os.path.join(root, f"cache{world}"))
        torch.save(out, os.path.join(root, f"w{world}r{rank}.pt"))
    finally:
        if world > 1:
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    ds = make_tiny_dataset(root / "data")
    tr = (ds.train + ds.query + ds.gallery)[:11]
    torch.manual_seed(0)
    net = InceptionI3d(width_mult=0.125)
    for mod in net.modules():  # BN statistics of real activations: O(1) eval features
        if isinstance(mod, torch.nn.BatchNorm3d):
            mod.momentum = None
    with torch.no_grad():
        net.train().extract_features(torch.rand(4, 3, 4, *SIZE) * 2 - 1)
    blob = pickle.dumps((tr, net.state_dict()))
    for world in (1, 2):
        mp.spawn(_worker, args=(world, free_port(), str(root), blob), nprocs=world, join=True)
    load = lambda w, r: torch.load(root / f"w{w}r{r}.pt", weights_only=False)  # noqa: E731
    return {"one": load(1, 0), "ranks": [load(2, 0), load(2, 1)], "n": len(tr)}


@pytest.mark.parametrize("case", ["clips", "random", "all", "one", "cached"])
def test_every_rank_gets_the_one_process_bank(runs, case):
    ref = runs["one"][case]
    for r in runs["ranks"]:
        got = r[case]
        assert got.feats.shape == ref.feats.shape
        assert torch.equal(got.feats, ref.feats), f"{case}: max |diff| {(got.feats - ref.feats).abs().max()}"
        assert np.array_equal(got.pids, ref.pids) and np.array_equal(got.camids, ref.camids)
        assert all(np.array_equal(a, b) for a, b in zip(got.indices, ref.indices))
        assert got.meta == ref.meta


def test_ranks_split_the_tracklets(runs):
    n = runs["n"]
    seen = [r["seen"] for r in runs["ranks"]]
    assert runs["one"]["seen"] == list(range(n))
    assert seen == [list(range(*shard_bounds(n, 2, k, 2))) for k in (0, 1)]  # units of 2 (random case)
    assert seen[0] and seen[1] and sorted(seen[0] + seen[1]) == list(range(n))


def test_one_cache_entry_written_and_reloaded(runs):
    for r in runs["ranks"]:
        assert r["files"] == runs["one"]["files"] and len(r["files"]) == 1
        assert torch.equal(r["reloaded"].feats, r["cached"].feats)
        assert r["reloaded"].meta["key"] == runs["one"]["cached"].meta["key"]


def test_shard_bounds_cover_in_order():
    for n, unit, world in [(11, 3, 2), (1, 4, 2), (100, 8, 3), (7, 1, 7), (5, 2, 4)]:
        bounds = [shard_bounds(n, unit, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(lo % unit == 0 for lo, hi in bounds if hi > lo)
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(4, 1, 2, 2)
