"""Device policy of the I3D paths (training, Sec. 3.2, and feature extraction, Sec. 3.1).

One place for what changes between the CPU and a CUDA GPU:

* precision (:func:`use_amp`, :func:`autocast`): bf16 autocast on CUDA by default, fp32 on
  the CPU unless asked for (``amp=True`` there is the CPU's bf16 autocast);
* memory format (:func:`prepare_model`): ``channels_last_3d`` everywhere (cuDNN and oneDNN
  are faster with it; the numbers are the same);
* backend flags (:func:`configure_backends`): ``cudnn.benchmark`` on CUDA, switched off
  around variable-length inputs by :func:`cudnn_benchmark`;
* host memory (:func:`pinned_empty`, :func:`to_device_batch`, :func:`network_input`):
  decoding threads write uint8 frames into page-locked buffers on CUDA, which are copied
  to the device asynchronously; the float conversion and the ``x / 127.5 - 1``
  normalisation (``data.transforms.frames_to_tensor``) run on the device, on a quarter of
  the bytes. On the CPU the same operations run in the same order, so CPU features are
  bit-identical to the per-clip ``frames_to_tensor`` path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

__all__ = [
    "autocast",
    "configure_backends",
    "cudnn_benchmark",
    "network_input",
    "pin",
    "pinned_empty",
    "prepare_model",
    "to_device_batch",
    "use_amp",
]


def use_amp(device: torch.device, amp: bool | None = None) -> bool:
    """Whether bf16 autocast is on: ``amp`` if given, else True exactly on CUDA."""
    device = torch.device(device)
    return device.type == "cuda" if amp is None else bool(amp)


def autocast(device: torch.device, enabled: bool | None = None):
    """bf16 autocast context for ``device`` (``enabled=None``: :func:`use_amp`'s default).

    Disabled, it is an explicit ``autocast(enabled=False)``, so an enclosing autocast does
    not leak into fp32 code.
    """
    device = torch.device(device)
    on = use_amp(device, enabled)
    if on:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def configure_backends(device: torch.device) -> None:
    """Backend flags for ``device``: on CUDA, ``cudnn.benchmark = True`` (the I3D's input
    shapes repeat every batch, so the per-shape search pays for itself); nothing on the CPU.
    TF32 and the other defaults are left as torch sets them."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """Temporarily set ``cudnn.benchmark`` (off for inputs whose shape changes every call,
    e.g. whole tracklets, where each new shape would trigger a new search)."""
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def prepare_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` on ``device`` in ``channels_last_3d`` (faster with cuDNN, and with oneDNN
    on the CPU: 1.2-2x for the default profile's I3D on our 2 cores; same numbers)."""
    return model.to(device, memory_format=torch.channels_last_3d)


def _pinnable(device: torch.device) -> bool:
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def pinned_empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An empty CPU tensor, page-locked when ``device`` is CUDA (so its copy to the device
    can be asynchronous); ordinary memory otherwise."""
    return torch.empty(tuple(shape), dtype=dtype, pin_memory=_pinnable(device))


def pin(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` in page-locked memory when ``device`` is CUDA (a copy unless already pinned);
    ``x`` itself otherwise."""
    if _pinnable(device) and x.device.type == "cpu" and not x.is_pinned():
        return x.pin_memory()
    return x


def to_device_batch(parts: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Concatenate CPU tensors along dim 0, on ``device``.

    On CUDA each part is copied asynchronously (from pinned memory) into one device buffer;
    on the CPU it is one ``torch.cat`` (no copy for a single part).
    """
    if not parts:
        raise ValueError("to_device_batch: expected at least one part")
    device = torch.device(device)
    if device.type == "cpu":
        return parts[0] if len(parts) == 1 else torch.cat(list(parts))
    n = sum(int(p.shape[0]) for p in parts)
    out = torch.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype, device=device)
    o = 0
    for p in parts:
        out[o : o + p.shape[0]].copy_(p, non_blocking=True)
        o += p.shape[0]
    return out


def network_input(frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 clips (B, L, H, W, 3) -> float32 (B, 3, L, H, W) in [-1, 1] on ``device``.

    ``x / 127.5 - 1`` in float32, the operations of ``frames_to_tensor`` (so the values are
    bit-identical); the permuted view keeps the frames' memory order, which is exactly
    ``channels_last_3d`` for (B, 3, L, H, W), so no layout copy is made.
    """
    if frames.dim() != 5 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"network_input: expected uint8 (B, L, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    x = frames.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float()
    x = x.div_(127.5).sub_(1.0)
    return x.contiguous(memory_format=torch.channels_last_3d)
