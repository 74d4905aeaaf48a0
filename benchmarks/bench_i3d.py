"""Throughput of the I3D backbone (reid_utils.models.i3d): clips/s of ``extract_features``
and of one re-ID training step (features -> triplet + softmax -> Adam).

Prints one line per (dtype, mode). Defaults are CPU-sized (default profile:
width 0.25, 4x64x32, batch 32). ``--full`` uses the paper's setting
(4x256x128, width 1, batch 64) and is meant for CUDA.

``channels_last_3d`` memory format by default, as reid_utils uses on every
device (``--no-channels-last`` for the contiguous baseline: on our 2-core CPU
channels-last was 1.2-2x faster for the default profile's network). On CUDA:
``cudnn.benchmark`` on, fp32 (TF32 allowed) and bf16 autocast, optional ``torch.compile``.
Timings synchronise the device and exclude warm-up iterations; inputs are
random tensors already on the device (no data loading).

Examples:
    python benchmarks/bench_i3d.py                       # CPU, default profile sizes
    python benchmarks/bench_i3d.py --clip-len 16 --threads 2
    python benchmarks/bench_i3d.py --full --device cuda --dtype fp32 bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reid_utils.models.i3d import InceptionI3d  # noqa: E402
from reid_utils.models.losses import batch_hard_triplet, pairwise_euclidean, softmax_ce  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="paper sizes: 4x256x128, width 1, batch 64 (CUDA)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--clip-len", type=int, default=4)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--input-width", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=None, help="batch of the training step (default: --batch)")
    p.add_argument(
        "--dtype",
        nargs="+",
        default=None,
        choices=["fp32", "bf16"],
        help="default: fp32 and bf16 on CUDA, fp32 on CPU (CPU bf16 is slow without AMX)",
    )
    p.add_argument("--mode", nargs="+", default=["infer", "train"], choices=["infer", "train"])
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    p.add_argument("--no-tf32", action="store_true", help="disable TF32 for fp32 on CUDA")
    p.add_argument("--iters", type=int, default=None, help="timed iterations")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args(argv)
    if a.full:
        a.width, a.clip_len, a.height, a.input_width = 1.0, 4, 256, 128
        a.batch = max(a.batch, 64)
    cuda = a.device.startswith("cuda")
    if a.channels_last is None:  # what reid_utils uses (train, features) on every device
        a.channels_last = True
    a.dtype = a.dtype or (["fp32", "bf16"] if cuda else ["fp32"])
    a.iters = a.iters or (50 if cuda else 5)
    a.warmup = a.warmup if a.warmup is not None else (10 if cuda else 2)
    a.train_batch = a.train_batch or a.batch
    return a


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timeit(fn, device, warmup, iters):
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def run(a):
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = not a.no_tf32
        torch.backends.cudnn.allow_tf32 = not a.no_tf32
    mf = torch.channels_last_3d if a.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    net = InceptionI3d(width_mult=a.width).to(device).to(memory_format=mf)
    feats_fn = torch.compile(net.extract_features) if a.compile else net.extract_features
    num_ids = max(2, a.train_batch // 4)
    clf = torch.nn.Linear(net.feat_dim, 625, bias=False).to(device)
    opt = torch.optim.Adam(list(net.parameters()) + list(clf.parameters()), lr=1e-4)
    shape = (a.clip_len, a.height, a.input_width)
    print(
        f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, "
        f"threads={torch.get_num_threads()})  torch {torch.__version__}  width={a.width} "
        f"feat_dim={net.feat_dim}  clip={a.clip_len}x{a.height}x{a.input_width}  "
        f"channels_last_3d={a.channels_last}  compile={a.compile}",
        flush=True,
    )
    results = []
    for dt in a.dtype:

        def amp(dt=dt):
            return torch.autocast(device.type, dtype=torch.bfloat16) if dt == "bf16" else nullcontext()

        if "infer" in a.mode:
            x = (torch.rand(a.batch, 3, *shape, device=device) * 2 - 1).to(memory_format=mf)
            net.eval()

            def infer(x=x):
                with torch.inference_mode(), amp():
                    return feats_fn(x)

            s = _timeit(infer, device, a.warmup, a.iters)
            results.append((dt, "infer", a.batch, s))
            print(
                f"{dt:5s} extract_features  batch {a.batch:4d}: {s * 1e3:8.1f} ms/batch  {a.batch / s:9.1f} clips/s",
                flush=True,
            )
        if "train" in a.mode:
            x = (torch.rand(a.train_batch, 3, *shape, device=device) * 2 - 1).to(memory_format=mf)
            labels = torch.arange(a.train_batch, device=device) % num_ids
            net.train()

            def step(x=x, labels=labels):
                opt.zero_grad(set_to_none=True)
                with amp():
                    f = feats_fn(x)
                    logits = clf(f)
                f, logits = f.float(), logits.float()
                loss = batch_hard_triplet(pairwise_euclidean(f), labels, 0.3) + softmax_ce(logits, labels)
                loss.backward()
                opt.step()

            s = _timeit(step, device, a.warmup, a.iters)
            results.append((dt, "train", a.train_batch, s))
            print(
                f"{dt:5s} train step        batch {a.train_batch:4d}: {s * 1e3:8.1f} ms/step   "
                f"{a.train_batch / s:9.1f} clips/s",
                flush=True,
            )
    return results


if __name__ == "__main__":
    run(parse_args())
