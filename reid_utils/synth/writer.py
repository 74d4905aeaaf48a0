"""Writing the synthetic benchmark in the exact MARS layout, and caching it.

:func:`generate` renders every planned tracklet and writes (as real MARS)::

    bbox_train/<pid>/<pid>C<c>T<tttt>F<fff>.jpg   pid 4 digits ('00-1' = junk)
    bbox_test/<pid>/...
    info/train_name.txt, info/test_name.txt         one frame name per line
    info/tracks_train_info.mat  (track_train_info)  rows [start, end, pid, camid]
    info/tracks_test_info.mat   (track_test_info)   start/end 1-based, inclusive
    info/query_IDX.mat          (query_IDX)          1-based rows of test tracks
    info/annotations.csv        per-frame ground truth (not in real MARS)
    info/synth_meta.json        config, version, identities, cameras, tracklets

Design choice: the output is byte-identical for a given config (fixed .mat
header text, one random stream per tracklet). :func:`ensure_synthetic` keeps
one generated copy per :func:`dataset_key` in the artifact cache. ``layout=``
``"dukemtmc-videoreid"`` or ``"prid2011"`` writes the same benchmark in that dataset's
layout instead (:mod:`reid_utils.synth.layouts`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from reid_utils.config import SynthConfig, config_key
from reid_utils.synth.atlas import AtlasCache
from reid_utils.synth.nuisances import NUISANCES
from reid_utils.synth.plan import choose_queries, frame_annotations, pid_str, plan_dataset, rng_for, validate
from reid_utils.synth.scenes import make_background
from reid_utils.synth.tracklet import render_tracklet

GENERATOR_VERSION = "1.0"
ANNOTATION_HEADER = ",".join(("split", "name", "true_pid", *NUISANCES))
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by reid_utils.synth (deterministic header)"


def _savemat_bytes(name: str, array: np.ndarray) -> bytes:
    """scipy.io.savemat to bytes with a fixed header text (scipy stamps the time)."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {name: array}, format="5")
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    return bytes(data)


def _jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def render_context(cfg: SynthConfig) -> tuple:
    """``(world, plans, backgrounds, atlases)``: what rendering any tracklet of ``cfg`` needs."""
    world, plans = plan_dataset(cfg)
    backgrounds = [make_background(c, rng_for(cfg, 4, c.camid), cfg.frame_height) for c in world.cameras]
    return world, plans, backgrounds, AtlasCache(cfg.frame_height)


def jpeg_quality(world, plan) -> int:
    """JPEG quality of ``plan``'s frames: the config's, lowered by its camera's ``jpeg_drop``."""
    return max(30, world.cfg.jpeg_quality - world.cameras[plan.camid - 1].jpeg_drop)


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path; ValueError unless it is empty or does not exist."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(f"generate: out_dir {out_dir} must be empty or not exist")
    return out_dir


def _write_split(split, plans, world, backgrounds, atlases, out_dir, ann_lines, tracklet_meta, bar):
    """Render and write the tracklets of one split; append their annotation lines and
    metadata. Returns (frame names, track rows [start, end, pid, camid] float64 (N, 4), bytes)."""
    cfg = world.cfg
    names, rows, n_bytes = [], [], 0
    for p in plans:
        frames = render_tracklet(p, world, backgrounds, atlases, cfg.frame_height)
        q = jpeg_quality(world, p)
        folder = out_dir / f"bbox_{split}" / pid_str(p.pid)
        folder.mkdir(parents=True, exist_ok=True)
        start = len(names) + 1
        a = frame_annotations(p)
        for f in range(p.length):
            name = p.frame_name(f)
            data = _jpeg_bytes(frames[f], q)
            (folder / name).write_bytes(data)
            n_bytes += len(data)
            names.append(name)
            ann_lines.append(f"{split},{name},{a['true_pid'][f]}," + ",".join(str(int(a[k][f])) for k in NUISANCES))
        rows.append([start, len(names), p.pid, p.camid])
        tracklet_meta.append(
            {
                "name": p.prefix,
                "split": split,
                "pid": p.pid,
                "camid": p.camid,
                "length": p.length,
                "kind": p.kind,
                "view": p.view,
                "partner_pid": p.partner_pid,
            }
        )
        bar.update(1)
    return names, np.asarray(rows, np.float64).reshape(-1, 4), n_bytes


def _meta(cfg: SynthConfig, world, tracklet_meta: list) -> dict:
    """Contents of ``info/synth_meta.json``."""
    return {
        "generator": "reid_utils.synth",
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
        "frame_size": [cfg.frame_height, cfg.frame_width],
        "cameras": [c.to_dict() for c in world.cameras],
        "identities": {
            pid_str(pid): {"split": split, **world.persons[f"id{pid}"].to_dict()}
            for split, ids in (("train", world.train_pids), ("test", world.test_pids))
            for pid in ids
        },
        "lookalike_pairs": world.lookalikes,
        "distractor_persons": {k: v.to_dict() for k, v in world.persons.items() if k.startswith("distractor")},
        "tracklets": tracklet_meta,
        "annotation_columns": ANNOTATION_HEADER.split(","),
        "annotation_notes": "flags are 0/1 ints; true_pid=-2: no person visible; on empty frames "
        "occlusion/id_switch/bad_crop are 0; distractor frames true_pid=0",
        "nuisance_rates": {k: getattr(cfg, f"p_{k}") for k in NUISANCES},
    }


def _write_info(info: Path, cfg: SynthConfig, split_rows: dict, ann_lines: list) -> np.ndarray:
    """Name lists, track .mat files, query_IDX.mat and annotations.csv; returns the 0-based query rows."""
    for split in ("train", "test"):
        names, rows, _ = split_rows[split]
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (info / f"tracks_{split}_info.mat").write_bytes(_savemat_bytes(f"track_{split}_info", rows))
    qidx = choose_queries(cfg, split_rows["test"][2])
    (info / "query_IDX.mat").write_bytes(_savemat_bytes("query_IDX", (qidx + 1).astype(np.float64).reshape(1, -1)))
    (info / "annotations.csv").write_text("\n".join(ann_lines) + "\n")
    return qidx


def generate(synth_cfg: SynthConfig, out_dir: str | Path, progress: bool = True, layout: str = "mars") -> dict:
    """Write a complete synthetic dataset in MARS layout (or ``layout``) into ``out_dir``.

    Args:
        synth_cfg: the ``SynthConfig`` (deterministic from ``seed``).
        out_dir: an empty or non-existent directory.
        progress: show a tqdm bar over tracklets.
        layout: ``"mars"``, ``"dukemtmc-videoreid"`` or ``"prid2011"``
            (:func:`reid_utils.synth.layouts.write_layout`; the MARS layout is written here).
    Returns:
        Summary stats: identities, train/test identities, tracklets, frames,
        queries, junk and distractor tracklets, MB, seconds (other layouts: see
        :func:`reid_utils.synth.layouts.write_layout`).
    """
    from tqdm.auto import tqdm

    if layout != "mars":
        from reid_utils.synth.layouts import write_layout

        return write_layout(synth_cfg, out_dir, layout, progress=progress)
    t0 = time.perf_counter()
    out_dir = check_out_dir(out_dir)
    cfg = synth_cfg
    world, plans, backgrounds, atlases = render_context(cfg)
    (out_dir / "info").mkdir(parents=True, exist_ok=True)
    ann_lines = [ANNOTATION_HEADER]
    n_bytes, split_rows, tracklet_meta = 0, {}, []
    bar = tqdm(total=len(plans), desc="synthetic MARS", unit="tracklet", disable=not progress)
    for split in ("train", "test"):
        sp = [p for p in plans if p.split == split]
        names, rows, nb = _write_split(split, sp, world, backgrounds, atlases, out_dir, ann_lines, tracklet_meta, bar)
        n_bytes += nb
        split_rows[split] = (names, rows, sp)
    bar.close()

    qidx = _write_info(out_dir / "info", cfg, split_rows, ann_lines)
    meta = _meta(cfg, world, tracklet_meta)
    (out_dir / "info" / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    seconds = time.perf_counter() - t0
    return {
        "identities": cfg.num_train_ids + cfg.num_test_ids,
        "train_ids": cfg.num_train_ids,
        "test_ids": cfg.num_test_ids,
        "tracklets": len(plans),
        "train_tracklets": len(split_rows["train"][2]),
        "test_tracklets": len(split_rows["test"][2]),
        "queries": int(len(qidx)),
        "junk_tracklets": sum(p.kind == "junk" for p in plans),
        "distractor_tracklets": sum(p.kind == "distractor" for p in plans),
        "frames": sum(len(split_rows[s][0]) for s in split_rows),
        "MB": round(n_bytes / 2**20, 2),
        "seconds": round(seconds, 2),
    }


def dataset_key(synth_cfg: SynthConfig, layout: str = "mars") -> str:
    """Cache key of a generated dataset: the config hash plus the generator version (and
    the layout and its writer's version, for a layout other than MARS)."""
    key = f"{config_key(synth_cfg)}-v{GENERATOR_VERSION}"
    if layout == "mars":
        return key
    from reid_utils.synth.layouts import LAYOUT_VERSION, check_layout

    return f"{key}-{check_layout(layout)}-v{LAYOUT_VERSION}"


def ensure_synthetic(
    synth_cfg: SynthConfig, cache_root: str | Path, verbose: bool = True, layout: str = "mars"
) -> Path:
    """The dataset for ``synth_cfg`` (in ``layout``) under ``cache_root``, generated on first use.

    A missing, partial or corrupt entry is (re)built atomically by the artifact
    cache; a complete one is reused. Prints identities, tracklets, frames, MB
    and the generation time.
    """
    from reid_utils.cache import COMPLETE_MARKER, ArtifactCache

    validate(synth_cfg)
    key = dataset_key(synth_cfg, layout)
    stats: dict = {}

    def build(tmp: Path):
        stats.update(generate(synth_cfg, tmp, progress=verbose, layout=layout))

    path = ArtifactCache(cache_root).get_or_build_dir("synthetic", key, build, meta=stats, verbose=verbose)
    if verbose:
        built = bool(stats)
        if not built:
            try:
                stats = json.loads((path / COMPLETE_MARKER).read_text()).get("meta", {})
            except (OSError, ValueError):
                stats = {}
        if stats:
            _report(path, stats, built)
    return path


def _report(path: Path, stats: dict, built: bool) -> None:
    """One line on a generated (or cached) dataset."""
    how = "generated" if built else "cached"
    if "layout" in stats:  # another layout: its own counts
        counts = ", ".join(f"{k} {v}" for k, v in stats.get("counts", {}).items())
        print(
            f"[synth] {how} {path.name} ({stats['layout']} layout): {stats['identities']} identities, "
            f"{counts}, {stats['frames']} frames, {stats['MB']} MB; generation took {stats['seconds']} s"
        )
        return
    print(
        f"[synth] {how} {path.name}: "
        f"{stats['identities']} identities ({stats['train_ids']} train / "
        f"{stats['test_ids']} test), {stats['tracklets']} tracklets "
        f"({stats['queries']} queries, {stats['distractor_tracklets']} distractor, "
        f"{stats['junk_tracklets']} junk), {stats['frames']} frames, {stats['MB']} MB; "
        f"generation took {stats['seconds']} s"
    )
