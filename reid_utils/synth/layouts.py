"""The synthetic benchmark in the DukeMTMC-VideoReID or PRID2011 layout, at any frame size.

:func:`write_layout` writes the planned benchmark (:mod:`reid_utils.synth.plan`: the same
identities, tracklets and pixels as the MARS layout of
:func:`reid_utils.synth.writer.generate`) as the real dataset is laid out, so that its
loader reads it exactly as it reads the release (paper Sec. 4.1):

* ``"mars"``: :func:`reid_utils.synth.writer.generate` (``bbox_train/``, ``bbox_test/``, ``info/``).
* ``"dukemtmc-videoreid"``: ``{train,query,gallery}/<pid>/<tracklet>/<pid>C<c>F<ffff>X<x>.jpg``
  (old-release names, tracklet folders numbered per identity). Query: the MARS layout's
  queries (one tracklet per test identity and camera); gallery: the other test tracklets;
  each distractor person is a gallery-only identity (pids after the last identity); junk is
  left out (the release has none).
* ``"prid2011"``: ``multi_shot/{cam_a,cam_b}/person_<pid>/<nnnn>.png``: camera 1 is cam_a,
  camera 2 cam_b, the longest tracklet of an identity in each (an identity seen by one of
  them only is in that one, as in the release), and ``splits_prid2011.json``: the 10
  half/half splits of the persons with >= 21 frames in both cameras that the loader
  generates (seed 0). Distractors and junk are left out; use ``num_cameras=2`` and
  ``min_len >= 21`` for every identity to count.

Every tree gets ``synth_meta.json`` (config, layout, each folder's source tracklet), which no
loader reads. Frames are ``SynthConfig.frame_height`` x ``frame_width``, deterministic.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from reid_utils.config import SynthConfig
from reid_utils.synth.plan import choose_queries
from reid_utils.synth.tracklet import render_tracklet
from reid_utils.synth.writer import GENERATOR_VERSION, check_out_dir, generate, jpeg_quality, render_context

LAYOUTS = ("mars", "dukemtmc-videoreid", "prid2011")
LAYOUT_VERSION = "1.0"
PRID_MIN_FRAMES = 21  # the PRID2011 protocol keeps persons with >= 21 frames in both cameras
PRID_NUM_SPLITS = 10
PRID_SPLITS_FILE = "splits_prid2011.json"
_PRID_CAMS = {1: "cam_a", 2: "cam_b"}


def check_layout(layout: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`; else ValueError naming them."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {', '.join(LAYOUTS)}")
    return layout


def _encode(frame: np.ndarray, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    else:
        Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


class _Writer:
    """Renders planned tracklets into folders of a tree, counting frames and bytes."""

    def __init__(self, cfg: SynthConfig, out_dir: Path, progress: bool, total: int):
        from tqdm.auto import tqdm

        self.world, self.plans, self.backgrounds, self.atlases = render_context(cfg)
        self.cfg, self.out_dir = cfg, out_dir
        self.frames = self.bytes = 0
        self.entries: list[dict] = []
        self.bar = tqdm(total=total, desc="synthetic tree", unit="tracklet", disable=not progress)

    def write(self, plan, rel: str, names: list[str], fmt: str, **info) -> None:
        """Render ``plan`` into ``out_dir/rel/<names[f]>``."""
        frames = render_tracklet(plan, self.world, self.backgrounds, self.atlases, self.cfg.frame_height)
        folder = self.out_dir / rel
        folder.mkdir(parents=True, exist_ok=True)
        q = jpeg_quality(self.world, plan)
        for frame, name in zip(frames, names):
            data = _encode(frame, fmt, q)
            (folder / name).write_bytes(data)
            self.bytes += len(data)
        self.frames += len(names)
        self.entries.append({"folder": rel, "source": plan.prefix, "length": plan.length, "kind": plan.kind, **info})
        self.bar.update(1)

    def finish(self, layout: str, counts: dict, extra: dict, t0: float) -> dict:
        """Write ``synth_meta.json``; the stats of the tree."""
        self.bar.close()
        cfg = self.cfg
        meta = {
            "generator": "reid_utils.synth",
            "generator_version": GENERATOR_VERSION,
            "layout": layout,
            "layout_version": LAYOUT_VERSION,
            "config": dataclasses.asdict(cfg),
            "frame_size": [cfg.frame_height, cfg.frame_width],
            "counts": counts,
            **extra,
            "tracklets": self.entries,
        }
        (self.out_dir / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        return {
            "layout": layout,
            "root": str(self.out_dir),
            "frame_size": [cfg.frame_height, cfg.frame_width],
            "counts": counts,
            **extra,
            "frames": self.frames,
            "MB": round(self.bytes / 2**20, 2),
            "seconds": round(time.perf_counter() - t0, 2),
        }


def _duke_name(pid: int, cam: int, f: int, x: int) -> str:
    """Old-release DukeMTMC-VideoReID frame name, e.g. ``0001C6F0099X030823.jpg``."""
    return f"{pid:04d}C{cam}F{f:04d}X{x:06d}.jpg"


def _write_duke(cfg: SynthConfig, out_dir: Path, progress: bool, t0: float) -> dict:
    """The DukeMTMC-VideoReID layout (see the module docstring)."""
    w = _Writer(cfg, out_dir, progress, total=0)
    test = [p for p in w.plans if p.split == "test"]
    queries = {id(test[i]) for i in choose_queries(cfg, test)}
    last = max(w.world.train_pids + w.world.test_pids)
    dis = sorted({p.person for p in test if p.kind == "distractor"}, key=lambda k: int(k.removeprefix("distractor")))
    dis_pid = {k: last + 1 + i for i, k in enumerate(dis)}
    if last + len(dis) > 9999:
        raise ValueError(f"layout='dukemtmc-videoreid': pids up to {last + len(dis)}; expected 4-digit pids")
    jobs, counter = [], {}
    for p in w.plans:
        if p.kind == "junk":
            continue
        pid = dis_pid[p.person] if p.kind == "distractor" else p.pid
        split = "train" if p.split == "train" else ("query" if id(p) in queries else "gallery")
        counter[pid] = counter.get(pid, 0) + 1
        jobs.append((p, split, pid, counter[pid]))
    w.bar.total = len(jobs)
    for p, split, pid, tnum in jobs:
        names = [_duke_name(pid, p.camid, f + 1, 1000 * (p.index + 1) + f) for f in range(p.length)]
        w.write(p, f"{split}/{pid:04d}/{tnum:04d}", names, "JPEG", split=split, pid=pid, camid=p.camid)
    counts = {s: sum(j[1] == s for j in jobs) for s in ("train", "query", "gallery")}
    split_ids = {s: len({j[2] for j in jobs if j[1] == s}) for s in counts}
    extra = {"identities": len({j[2] for j in jobs}), "split_identities": split_ids, "distractor_identities": len(dis)}
    return w.finish("dukemtmc-videoreid", counts, extra, t0)


def prid_splits(persons: list[int], num_splits: int = PRID_NUM_SPLITS, seed: int = 0) -> list[dict]:
    """``num_splits`` random half/half train/test splits of ``persons`` (deterministic; with an
    odd count the extra person goes to test). ``reid_utils.data.prid.make_prid_splits`` is this
    function, so a synthetic PRID tree carries the splits its loader would make."""
    persons = np.array(sorted(persons), dtype=np.int64)
    rng = np.random.default_rng(seed)
    half = len(persons) // 2
    out = []
    for _ in range(num_splits):
        perm = rng.permutation(persons)
        out.append({"train": sorted(perm[:half].tolist()), "test": sorted(perm[half:].tolist())})
    return out


def _prid_choice(plans: list) -> dict:
    """``{(pid, camid): plan}``: the longest tracklet of each identity in cameras 1 and 2."""
    best = {}
    for p in plans:
        if p.kind == "normal" and p.camid in _PRID_CAMS:
            key = (p.pid, p.camid)
            if key not in best or p.length > best[key].length:
                best[key] = p
    return best


def _write_prid(cfg: SynthConfig, out_dir: Path, progress: bool, t0: float) -> dict:
    """The PRID2011 multi-shot layout and its splits file (see the module docstring)."""
    w = _Writer(cfg, out_dir, progress, total=0)
    chosen = _prid_choice(w.plans)
    both = sorted({pid for pid, _ in chosen if (pid, 1) in chosen and (pid, 2) in chosen})
    eligible = [pid for pid in both if min(chosen[(pid, 1)].length, chosen[(pid, 2)].length) >= PRID_MIN_FRAMES]
    if len(eligible) < 2:
        raise ValueError(
            f"layout='prid2011': {len(eligible)} identities have >= {PRID_MIN_FRAMES} frames in both camera 1 "
            f"and camera 2 (PRID2011 keeps only those); expected at least 2: use SynthConfig(num_cameras=2, "
            f"min_len>={PRID_MIN_FRAMES})"
        )
    w.bar.total = len(chosen)
    for (pid, cam), p in sorted(chosen.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        names = [f"{f + 1:04d}.png" for f in range(p.length)]
        w.write(p, f"multi_shot/{_PRID_CAMS[cam]}/person_{pid:04d}", names, "PNG", pid=pid, camid=cam)
    splits = prid_splits(eligible)
    (out_dir / PRID_SPLITS_FILE).write_text(json.dumps(splits, indent=1))
    counts = {c: sum(cam == k for _, cam in chosen) for k, c in _PRID_CAMS.items()}
    extra = {"identities": len({pid for pid, _ in chosen}), "eligible_persons": len(eligible)}
    return w.finish("prid2011", counts, extra, t0)


def write_layout(synth_cfg: SynthConfig, out_dir: str | Path, layout: str = "mars", progress: bool = False) -> dict:
    """Write the synthetic benchmark of ``synth_cfg`` into ``out_dir`` in a dataset's layout.

    ``load_dataset(layout, out_dir)`` (or any folder up to two levels above ``out_dir``)
    then reads it as the real dataset; ``"mars"`` is exactly
    :func:`reid_utils.synth.writer.generate` (and what ``load_dataset("synthetic", out_dir)``
    reads, with the per-frame annotations).

    Args:
        synth_cfg: the ``SynthConfig`` (identities, lengths, ``frame_height`` x ``frame_width``).
        out_dir: an empty or non-existent folder (parents are created), e.g.
            ``tmp/reid-data/dukemtmc-vidreid/DukeMTMC-VideoReID``.
        layout: ``"mars"``, ``"dukemtmc-videoreid"`` or ``"prid2011"``.
        progress: a tqdm bar over tracklets.

    Returns:
        Stats: ``layout``, ``root``, ``frame_size`` [H, W], ``counts`` (tracklets per split
        ``train``/``query``/``gallery``, or per camera ``cam_a``/``cam_b``), ``identities``,
        ``frames``, ``MB``, ``seconds``; Duke also ``split_identities`` and
        ``distractor_identities``, PRID ``eligible_persons``. ``"mars"``: ``generate``'s stats
        plus ``layout`` and ``root``.

    Raises:
        ValueError: an unknown layout, a non-empty ``out_dir``, a bad config, or (PRID) fewer
            than 2 identities with >= 21 frames in cameras 1 and 2.
    """
    from reid_utils.synth.plan import validate

    check_layout(layout)
    validate(synth_cfg)
    out_dir = check_out_dir(out_dir)
    if layout == "mars":
        return {**generate(synth_cfg, out_dir, progress=progress), "layout": "mars", "root": str(out_dir)}
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    write = _write_duke if layout == "dukemtmc-videoreid" else _write_prid
    return write(synth_cfg, out_dir, progress, t0)
