"""Feature extraction across ``torch.distributed`` ranks (``torchrun``, multi-GPU).

When a process group is initialised with more than one rank, ``features.extract_clip_features``
gives each rank a contiguous shard of the tracklets (:func:`shard_bounds`), gathers the
shards in rank order (:func:`gather_rows`: one padded ``all_gather``, NCCL on GPUs, gloo on
CPUs) and every rank ends with the bank one process would compute; ``features.get_features``
then writes the cache entry from rank 0 only (``distributed.rank0_cached``). Shard
boundaries fall on whole batches of the one-process run, so every forward pass sees the
batch it would see in one process: on the same device type and thread count the gathered
features are bit-identical to the one-process features. Every rank must make the same
calls (they are collective). The cache folder must be shared by the ranks (one node, or a
shared file system).
"""

from __future__ import annotations

import math

import torch

from reid_utils.training import distributed

__all__ = ["batch_unit", "gather_rows", "rank_and_world", "shard_bounds"]


def rank_and_world(enabled: bool | None = None) -> tuple[int, int]:
    """``(rank, world size)`` of the default process group (``training.distributed``);
    ``(0, 1)`` when none is initialised or ``enabled`` is False."""
    if enabled is False:
        return 0, 1
    return distributed.rank(), distributed.world_size()


def shard_bounds(n_items: int, unit: int, rank: int, world: int) -> tuple[int, int]:
    """Items ``[lo, hi)`` of ``rank``: ``ceil(n_items / unit)`` units of ``unit`` items split
    into ``world`` contiguous, near-equal runs (the last unit may be short; a rank may get
    none when there are fewer units than ranks)."""
    if unit < 1 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard_bounds: need unit >= 1 and 0 <= rank < world, got {unit}, {rank}, {world}")
    units = math.ceil(n_items / unit)
    lo, hi = (rank * units) // world, ((rank + 1) * units) // world
    return min(n_items, lo * unit), min(n_items, hi * unit)


def batch_unit(batch_size: int, per_item: int) -> int:
    """Items per shard unit so that units hold whole batches: lcm(batch, per_item) / per_item
    (``per_item`` clips per tracklet, ``batch_size`` clips per forward pass)."""
    return math.lcm(int(batch_size), int(per_item)) // int(per_item)


def _comm_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Every rank's ``local`` (n_r, *S) concatenated in rank order: (sum n_r, *S), on the CPU.

    Ranks with no rows may pass any (0, ...) tensor of the same number of dims and dtype;
    the others must agree on S. Sizes are exchanged first, then one ``all_gather`` of the
    rows padded to the largest shard (exact: padding rows are dropped).
    """
    import torch.distributed as dist

    dev, world = _comm_device(), dist.get_world_size()
    meta = torch.tensor([local.shape[0], *local.shape[1:]], dtype=torch.int64, device=dev)
    metas = [torch.empty_like(meta) for _ in range(world)]
    dist.all_gather(metas, meta)
    shapes = [tuple(int(v) for v in m.tolist()) for m in metas]
    inner = {s[1:] for s in shapes if s[0] > 0}
    if len(inner) > 1:
        raise RuntimeError(f"gather_rows: ranks disagree on the row shape: {sorted(inner)}")
    if not inner:
        return local.new_empty((0, *local.shape[1:]), device="cpu")
    inner_shape = inner.pop()
    rows = max(s[0] for s in shapes)
    buf = torch.zeros((rows, *inner_shape), dtype=local.dtype, device=dev)
    if local.shape[0]:
        buf[: local.shape[0]] = local.to(dev)
    bufs = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(bufs, buf)
    return torch.cat([b[: s[0]].cpu() for b, s in zip(bufs, shapes)])
