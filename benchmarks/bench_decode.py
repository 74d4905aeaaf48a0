"""Frame-decoding throughput of the loader, and how many decoding threads feed a GPU.

Measures decoded frames/s on this CPU for the per-frame work of the loaders
(``reid_utils.data.transforms.load_frame``: Pillow decode, RGB, bilinear resize to
256 x 128, uint8 array; no frame cache, files in the OS page cache), done clip by clip (4
frames) on 1 and 2 decoding threads (``reid_utils.training.loading.bounded_map``, as the
loaders run them), in two variants:

* ``uint8``: what the feature extractor's threads do (``loading.clip_loader``; the float
  conversion and normalisation run on the GPU, ``training.accel.network_input``);
* ``+tensor``: also ``frames_to_tensor`` (float32 (3, L, H, W) in [-1, 1]) on the CPU, as
  the I3D training loader does.

Three sources: MARS-like JPEGs already 256 x 128 (no resize), DukeMTMC-VideoReID-like
larger JPEGs (resized down) and PRID2011-like 128 x 64 PNGs (resized up), written once
to a temporary folder (synthetic pedestrian-like images: smooth background, coloured
blobs, sensor noise). The table ends with the threads needed for 7,500 clips/s of 4 frames
(30,000 frames/s, the inference target of ``benchmarks/gpu_check.py``), from the measured
rate per CPU-second of a decoding thread (a free core's rate), beside the wall-clock
rates with 1 and 2 threads (which show the scaling, on a machine shared with other jobs).

Usage: ``python benchmarks/bench_decode.py [--seconds 2] [--frames 256]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reid_utils.data.transforms import frames_to_tensor, load_frames  # noqa: E402
from reid_utils.training.loading import bounded_map  # noqa: E402

SIZE = (256, 128)  # the paper's input (height, width)
CLIP = 4  # frames per clip (L)
TARGET_CLIPS = 7500  # clips/s the GPU check targets
SOURCES = {  # name: ((height, width) on disk, format)
    "MARS-like JPEG 256x128": ((256, 128), "JPEG"),
    "Duke-like JPEG 384x160": ((384, 160), "JPEG"),
    "PRID-like PNG 128x64": ((128, 64), "PNG"),
}


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A pedestrian-like crop: smooth background, a few coloured blobs, noise (uint8 (h, w, 3))."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = rng.uniform(60, 200, 3) + rng.uniform(-40, 40, 3) * (yy / h)[..., None]
    img = np.broadcast_to(img, (h, w, 3)).copy()
    for _ in range(6):
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.25, 0.75) * w
        ry, rx = rng.uniform(0.05, 0.2) * h, rng.uniform(0.1, 0.3) * w
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_frames(folder: Path, shape, fmt: str, n: int, seed: int = 0) -> list[str]:
    """``n`` synthetic frames of ``shape`` in ``fmt`` (JPEG quality 90, like MARS) under ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        p = folder / f"{k:05d}.{'jpg' if fmt == 'JPEG' else 'png'}"
        kw = {"quality": 90} if fmt == "JPEG" else {}
        Image.fromarray(_image(rng, *shape)).save(p, fmt, **kw)
        paths.append(str(p))
    return paths


def measure(paths: list[str], workers: int, to_tensor: bool, seconds: float) -> tuple[float, float]:
    """(frames per wall-clock second, frames per CPU-second of the decoding threads): clips
    of CLIP frames decoded on ``workers`` threads for about ``seconds``. The second figure is
    the rate of one fully available core (each thread's own CPU time, ``time.thread_time``),
    which other jobs on a shared machine do not lower much."""
    clips = [paths[i : i + CLIP] for i in range(0, len(paths) - CLIP + 1, CLIP)]
    cpu = []

    def load(c):
        t = time.thread_time()
        frames = load_frames(c, SIZE)
        out = frames_to_tensor(frames) if to_tensor else frames
        cpu.append(time.thread_time() - t)
        return out

    for _ in bounded_map(load, clips[:8], workers, 2 * max(1, workers)):  # warm-up (imports, page cache)
        pass
    cpu.clear()
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in bounded_map(load, clips, workers, 4 * max(1, workers)):
            done += CLIP
    return done / (time.perf_counter() - t0), done / sum(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per row")
    ap.add_argument("--frames", type=int, default=256, help="distinct frame files per source")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from PIL import __version__ as pil_version

    try:
        load_avg = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load_avg = "n/a"
    print(f"CPU cores: {os.cpu_count()}; load average {load_avg}; Pillow {pil_version}; torch {torch.__version__}")
    need = TARGET_CLIPS * CLIP
    print(f"target: {TARGET_CLIPS} clips/s x {CLIP} frames = {need} decoded frames/s\n")
    cols = ("per core", "1 thread", "2 threads", "threads")
    head = f"{'source':<24} {'variant':<8} {'KB/file':>7} " + " ".join(f"{c:>9}" for c in cols)
    rows = [head, "-" * len(head)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (shape, fmt) in SOURCES.items():
            paths = write_frames(Path(tmp) / fmt / f"{shape[0]}x{shape[1]}", shape, fmt, args.frames)
            kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
            for to_tensor in (False, True):
                one, core = measure(paths, 1, to_tensor, args.seconds)
                two, _ = measure(paths, 2, to_tensor, args.seconds)
                rows.append(
                    f"{name:<24} {'+tensor' if to_tensor else 'uint8':<8} {kb:7.1f} {core:9.0f} {one:9.0f} "
                    f"{two:9.0f} {math.ceil(need / core):9d}"
                )
                print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))
    print(
        f"\ndecoded {SIZE[0]}x{SIZE[1]} frames/s: 'per core' per CPU-second of a decoding thread; '1 thread' and "
        f"'2 threads' per wall-clock second here (lower when other jobs share the cores); 'threads' = "
        f"ceil({need} / per core): decoding threads (one free core each) for {TARGET_CLIPS} clips/s, if they "
        "scale linearly (Pillow releases the GIL while it decodes and resizes)."
    )


if __name__ == "__main__":
    main()
