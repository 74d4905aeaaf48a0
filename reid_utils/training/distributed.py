"""Data-parallel training under ``torchrun`` (DistributedDataParallel), one process per device.

A process started by ``torchrun --nproc_per_node=N`` finds ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous in its environment; :func:`init_from_env` joins the
group (NCCL on GPUs, each rank on ``cuda:LOCAL_RANK``; gloo on CPUs). Without them
everything here is a no-op and a single process runs exactly the code it ran before.

Equivalence with one process on the global batch (Sec. 3.2, Eqs. 7-8): every rank loads
its contiguous slice of the global P x K batch (:func:`local_slice`); embeddings and
logits are all-gathered (:func:`gather_with_grad`, the gradient flows to the local
slice), so batch-hard mining and the softmax see the whole batch and every rank computes
the same global loss L. Rank r's backward yields only the part of dL/dtheta that passes
through its own samples; DDP *averages* gradients over the N ranks, so the loss is
back-propagated scaled by N (:func:`scale_grad`; the recorded value stays L), and the
average of N partial gradients x N is their sum, the full gradient. BatchNorm: per-rank
statistics would normalise each slice by its own mean and variance, which is not what
one process on the global batch computes, so the BatchNorm layers are synchronised:
``torch.nn.SyncBatchNorm`` on CUDA, :class:`CPUSyncBatchNorm` on the CPU (torch's
refuses CPU tensors); running statistics then follow the global batch as well.

Only rank 0 writes the cache and checkpoints and shows progress (:func:`is_main`,
:func:`rank0_cached`); the others wait at a barrier and read the result from the cache.
"""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from reid_utils.cache import ArtifactCache, artifact_key, cached

__all__ = [
    "CPUSyncBatchNorm",
    "barrier",
    "broadcast_object",
    "convert_sync_batchnorm",
    "gather_with_grad",
    "init_from_env",
    "is_main",
    "local_slice",
    "rank",
    "rank0_cached",
    "rank0_first",
    "scale_grad",
    "shutdown",
    "world_size",
    "wrap_ddp",
]

# A rank may wait long at a barrier while rank 0 alone evaluates or writes the cache.
TIMEOUT = datetime.timedelta(hours=2)


def init_from_env() -> bool:
    """Join the process group described by torchrun's environment variables.

    Returns True when running with more than one process (``WORLD_SIZE > 1``). The
    backend is NCCL when CUDA is available (and ``torch.cuda.set_device(LOCAL_RANK)``,
    so ``torch.device("cuda")`` is this rank's GPU), gloo otherwise.
    """
    if world_size() > 1:
        return True
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1:
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={n} but {', '.join(missing)} unset: start the processes with torchrun")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return True


def shutdown(wait: bool = True) -> None:
    """Leave the process group, if one was joined; ``wait``: after a last barrier (without
    it a rank that is done leaves while rank 0 still works alone, e.g. on the aggregators)."""
    if world_size() > 1:
        if wait:
            barrier()
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes (1 without an initialised process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without an initialised process group)."""
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    """True on rank 0, the one process that writes files and shows progress."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects; ``obj`` itself in a single process)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_slice(n: int) -> slice:
    """This rank's contiguous part of ``n`` items (sizes differ by at most one, lower ranks
    first; ``slice(0, n)`` in a single process). Concatenated in rank order the slices are
    ``range(n)``: :func:`gather_with_grad` restores the global order."""
    w, r = world_size(), rank()
    base, extra = divmod(int(n), w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (r < extra))


class _GatherLocalGrad(torch.autograd.Function):
    """All-gather along dim 0; backward returns the gradient of the local slice only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple) -> torch.Tensor:
        r = rank()
        ctx.start, ctx.n = sum(sizes[:r]), sizes[r]
        m = max(sizes)
        padded = x.new_zeros((m, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad[ctx.start : ctx.start + ctx.n], None


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` concatenated in rank order; differentiable w.r.t. the local ``x``.

    Args:
        x: (B_r, ...) this rank's rows (B_r may differ between ranks, as from :func:`local_slice`).

    Returns:
        (sum_r B_r, ...) on every rank; other ranks' rows are constants here (their
        gradient is computed by their own process), see :func:`scale_grad`.
    """
    if world_size() == 1:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    return _GatherLocalGrad.apply(x.contiguous(), tuple(int(s) for s in sizes))


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def scale_grad(loss: torch.Tensor, factor: float | None = None) -> torch.Tensor:
    """``loss`` unchanged in value, its gradient multiplied by ``factor`` (default the world size).

    With a loss computed on the gathered global batch, each rank's backward gives the
    part of the gradient that flows through its own samples; DDP averages over the
    N ranks, so scaling by N makes the result the sum of the parts: the gradient one
    process computes on the global batch. ``loss`` itself in a single process.
    """
    factor = world_size() if factor is None else factor
    return loss if factor == 1 else _ScaleGrad.apply(loss, float(factor))


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        g = grad.clone()
        dist.all_reduce(g)
        return g


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over all ranks.

    The CPU counterpart of ``torch.nn.SyncBatchNorm`` (which accepts GPU tensors only):
    mean and biased variance over the samples of every rank (two differentiable
    all-reduces of per-channel sums), the running statistics updated with the
    unbiased variance of the global batch, as ``BatchNorm`` does on one process. In
    eval mode, or in a single process, it is plain ``BatchNorm`` (any input of >= 2 dims).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"CPUSyncBatchNorm: expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        total = sums[-1].detach()
        mean = sums[:-1] / total
        xc = x - mean.view(shape)
        var = _AllReduceSum.apply((xc * xc).sum(dims)) / total
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), float(total))
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked.add_(1)
        m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - m).add_(mean, alpha=m)
        self.running_var.mul_(1 - m).add_(var * (n / max(n - 1.0, 1.0)), alpha=m)


def _convert_cpu(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by :class:`CPUSyncBatchNorm` sharing its
    parameters and buffers (same state-dict keys, so checkpoints stay interchangeable)."""
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Synchronised BatchNorm layers for ``device``: ``torch.nn.SyncBatchNorm`` on CUDA,
    :class:`CPUSyncBatchNorm` elsewhere. Parameters are shared, not copied."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` for the training forward pass: itself in a single process; with several,
    its BatchNorm layers synchronised in place (:func:`convert_sync_batchnorm`; call this
    before building the optimiser) and a ``DistributedDataParallel`` wrapper around it.

    Every parameter that requires a gradient must be used in the forward pass.
    """
    if world_size() == 1:
        return model
    for name, child in list(model.named_children()):
        setattr(model, name, convert_sync_batchnorm(child, device))
    cuda = torch.device(device).type == "cuda"
    # channels_last_3d 1x1x1 kernels get contiguous gradients: DDP copies them (harmless).
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(model, device_ids=[torch.cuda.current_device()] if cuda else None)


def rank0_first(fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, then on the other ranks (for steps that fill a shared cache,
    such as generating a data set: the others then read it)."""
    if world_size() == 1:
        return fn()
    out = fn() if is_main() else None
    barrier()
    return out if is_main() else fn()


def rank0_cached(
    cache_root, kind: str, spec: dict, compute: Callable[[], Any], verbose: bool = True, name: str | None = None
) -> Any:
    """``reid_utils.cache.cached`` for a collective computation (a distributed training, a
    sharded feature extraction): every rank calls it.

    Rank 0 looks the entry up; when it is missing every rank runs ``compute()``
    together, rank 0 alone saves the result, and after a barrier the others load it
    from the cache. A single process calls ``cached`` unchanged. ``name``: the entry's
    file name prefix (default ``kind``), as in ``cached``.
    """
    if world_size() == 1:
        return cached(cache_root, kind, spec, compute, name=name, verbose=verbose)
    cache, key, name = ArtifactCache(cache_root), artifact_key(kind, spec), name or kind
    entry = None
    if is_main() and cache.has(name, key):
        try:
            entry = cache.load(name, key)
        except Exception:  # corrupt: computed again below
            entry = None
    if not broadcast_object(entry is not None):
        entry = compute()
        if is_main():
            cache.save(name, key, entry)
    barrier()
    return entry if is_main() else cache.load(name, key)
