"""Batched I3D forward passes over decoded clips: the engine of
``reid_utils.training.features.extract_clip_features`` (Sec. 3.1 clip features).

Clips arrive as uint8 (M, L, H, W, 3) per tracklet from ``loading.clip_loader`` (decoding
threads, page-locked buffers on CUDA); they are packed into forward passes of
``batch_size`` clips in order, converted to the network input on the device
(``accel.network_input``) and run under the device's precision policy
(``accel.autocast``); the features stay on the device until the end.
"""

from __future__ import annotations

import contextlib

import torch

from reid_utils.training import accel
from reid_utils.training.loading import bounded_map

__all__ = ["features_of"]


def features_of(model, load, items: range, method: str, num_workers: int, run: dict, bar: dict) -> torch.Tensor:
    """(len(items) * M, D) float32 features of the tracklets ``items`` on ``run["device"]``.

    Frames are decoded on ``num_workers`` threads (``loading.bounded_map``); outputs stay on
    the device until the end (no synchronisation per batch). On CUDA ``cudnn.benchmark`` is
    on, except for ``"all"`` (a new input shape per tracklet).
    """
    from tqdm.auto import tqdm

    if len(items) == 0:
        return torch.zeros(0)
    device = run["device"]
    accel.configure_backends(device)
    bench = accel.cudnn_benchmark(method != "all") if device.type == "cuda" else contextlib.nullcontext()
    was_training = model.training
    accel.prepare_model(model, device).eval()
    try:
        with torch.inference_mode(), bench:
            loaded = bounded_map(load, items, num_workers, 4 * max(1, num_workers))
            loaded = tqdm(loaded, total=len(items), **bar)
            if method == "all":
                feats = [_all_frames_feature(model, x, device, run["amp"], run["max_frames"])[None] for x in loaded]
            else:
                feats = _batched_features(model, loaded, run["batch_size"], device, run["amp"])
    finally:
        model.train(was_training)
    return torch.cat(feats)


def _run_batch(model, parts: list[torch.Tensor], device, amp: bool) -> torch.Tensor:
    """Features (B, D) float32, on ``device``, of the uint8 clips ``parts`` (b_k, L, H, W, 3)."""
    x = accel.network_input(accel.to_device_batch(parts, device), device)
    with accel.autocast(device, amp):
        return model.extract_features(x).float()


def _batched_features(model, loaded, batch_size: int, device, amp: bool) -> list[torch.Tensor]:
    """Features of the clips of every loaded tracklet (uint8 (M, L, H, W, 3) each),
    ``batch_size`` clips per forward pass, in order."""
    feats: list[torch.Tensor] = []
    parts: list[torch.Tensor] = []
    n = 0
    for x in loaded:
        while x.shape[0]:
            take = min(batch_size - n, int(x.shape[0]))
            parts.append(x[:take])
            n, x = n + take, x[take:]
            if n == batch_size:
                feats.append(_run_batch(model, parts, device, amp))
                parts, n = [], 0
    if parts:
        feats.append(_run_batch(model, parts, device, amp))
    return feats


def _all_frames_feature(model, frames: torch.Tensor, device, amp: bool, max_frames: int) -> torch.Tensor:
    """uint8 (1, T, H, W, 3) -> (D,): one pass, or the length-weighted mean over chunks.

    A tracklet longer than ``max_frames`` is cut into near-equal consecutive chunks (one
    pool over the whole tracklet would need unbounded memory for MARS's longest
    tracklets; for chunks of >= 32 frames the difference is only the temporal boundary
    of the convolutions).
    """
    T = frames.shape[1]
    n = -(-T // max_frames)
    bounds = [(k * T) // n for k in range(n + 1)]
    acc = None
    for a, b in zip(bounds[:-1], bounds[1:]):
        f = _run_batch(model, [frames[:, a:b]], device, amp)[0] * ((b - a) / T)
        acc = f if acc is None else acc + f
    return acc
