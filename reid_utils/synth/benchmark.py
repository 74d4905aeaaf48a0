"""The embedded synthetic video re-ID benchmark, written in the exact MARS layout.

Why it exists: the paper's method (Sec. 3, Eqs. 1-4) learns to weight clip
pairs by their usefulness because real tracklets contain clips of unequal
quality -- occlusion, frames without the person, tracker identity switches,
bad boxes, blur (Sec. 1, Fig. 1; the corruption study of Sec. 4.4). MARS (Sec.
4.1) cannot be downloaded here, so this module generates a small benchmark
with those phenomena, deterministic from ``SynthConfig.seed`` and with per-frame
ground truth of what went wrong. Rendering lives in ``reid_utils.synth_render``.

Layout written by :func:`generate` (as real MARS)::

    bbox_train/<pid>/<pid>C<c>T<tttt>F<fff>.jpg   pid 4 digits ('00-1' = junk)
    bbox_test/<pid>/...
    info/train_name.txt, info/test_name.txt         one frame name per line
    info/tracks_train_info.mat  (track_train_info)  rows [start, end, pid, camid]
    info/tracks_test_info.mat   (track_test_info)   start/end 1-based, inclusive
    info/query_IDX.mat          (query_IDX)          1-based rows of test tracks
    info/annotations.csv        per-frame ground truth (not in real MARS)
    info/synth_meta.json        config, version, identities, cameras, tracklets

Design choices (the brief leaves them open; documented here):

* Splits: identities are disjoint between ``bbox_train`` and ``bbox_test``;
  pids are drawn without replacement from 1..~1.3N and interleave between the
  splits. Junk (pid -1) and distractor (pid 0) tracklets occur only in the test
  split, as in MARS. Every identity appears in at least two cameras.
* Tracklets per identity: the identity's cameras are drawn (2..C, fewer more
  likely); each gets ``1 + Poisson(lam)`` tracklets with ``lam`` chosen so the
  mean number of tracklets per identity is ``tracklets_per_id_cam * C``.
* Lengths: log-normal around ``median_len`` (sigma 0.8), clipped to
  [``min_len``, ``max_len``]: heavy tailed with many short tracklets.
* Queries: for every test identity and every camera it appears in, one of its
  tracklets there (uniformly) -- like MARS, one query per identity per camera;
  each has matches in the identity's other cameras. Junk and distractors are
  never queries.
* Nuisances come in temporally contiguous runs (tracking errors persist):
  for each nuisance k with per-frame rate p_k, a tracklet is affected with
  probability p_k / E[f_k] and then a fraction f_k of its frames (stochastic
  rounding, one or two runs) is affected, so the expected per-frame rate is
  exactly p_k while most tracklets stay clean and a few are heavily hit.
  ``empty`` and ``id_switch`` runs (tracker lost / drifted onto someone else)
  are anchored at the start or end of the tracklet more often than not.
* Annotation semantics (``info/annotations.csv``; all flags are 0/1 ints):
  ``empty`` = no person in the box (``true_pid = -2``); on empty frames the
  occlusion, id_switch and bad_crop flags are 0 (nothing to occlude/crop).
  ``id_switch`` = another identity fills the box (``true_pid`` = that
  identity). ``occlusion`` = an object or a passing pedestrian covers part of
  the person (a binary flag, the occluder is placed to cover a substantial
  part of the body on every flagged frame). ``bad_crop`` = the box is shifted,
  too tight or too loose so that the person is cut or small. ``blur`` = motion
  blur (camera defocus and low resolution are camera properties, see
  ``synth_meta.json``, not flagged). Distractor frames have ``true_pid = 0``.
  Junk frames are either background (``empty``) or a fragment of a test
  identity (``bad_crop``, ``true_pid`` = that identity).

Difficulty calibration (default profile; measured while building this
module, notebook 00 recomputes the baseline):

* Colour-histogram baseline (``reid_utils.baselines``, torchreid protocol):
  22 % mAP / 16 % rank-1 with seed 0 (26 % / 21 % with seed 1). Colour
  carries identity information, but camera colour casts
  (``camera_variation``), look-alike pairs with identical colours,
  viewpoint changes and the nuisances keep it far from 100 %. The plain
  full-box histogram (no centre weighting, no grey-world correction) is at
  chance: each camera's background and colour cast dominate it.
* A small 2D CNN trained from scratch with softmax on the training frames
  (a throw-away probe, not part of the package; 1200 steps of 64 frames)
  reached 40 % mAP / 32 % rank-1 on the same split and was still improving.
  With 60-100 training identities the same probe plateaued near 31 % mAP,
  hence the default of many training identities with few tracklets each.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from reid_utils.config import SynthConfig, config_key
from reid_utils.synth import render as R

GENERATOR_VERSION = "1.0"
NUISANCES = ("occlusion", "empty", "id_switch", "bad_crop", "blur")
ANNOTATION_HEADER = "split,name,true_pid,occlusion,empty,id_switch,bad_crop,blur"
MAX_NUISANCE_RATE = 0.3
NO_PERSON = -2
N_CROWD = 24  # extra pedestrians used only as passing occluders

# run model per nuisance: (distribution of the affected fraction f of an affected tracklet,
# probability that the run is anchored at the start or end of the tracklet)
_RUN_MODEL = {
    "occlusion": ("beta", 0.0),
    "empty": ("uniform", 0.7),
    "id_switch": ("uniform", 0.6),
    "bad_crop": ("beta", 0.0),
    "blur": ("beta", 0.0),
}
_MEAN_FRACTION = {"beta": 2.0 / 5.0, "uniform": 0.3}  # Beta(2, 3); Uniform(0.1, 0.5)


@dataclass
class TrackletPlan:
    """Everything decided about one tracklet before rendering."""

    split: str  # train | test
    pid: int  # folder pid: > 0 identity, 0 distractor, -1 junk
    camid: int  # 1-based
    tidx: int  # tracklet index within (pid, camid), 1-based
    length: int
    person: str | None  # key into World.persons (None: junk without a person)
    view: str
    kind: str = "normal"  # normal | distractor | junk
    raw: dict = field(default_factory=dict)  # planned nuisance runs, bool (T,)
    partner_pid: int | None = None  # identity shown on id_switch frames
    junk_fragment: np.ndarray | None = None  # junk: bool (T,), True = fragment frame
    junk_pid: int | None = None  # junk: identity the fragment comes from
    index: int = -1  # global render index (seeds its RNG)

    @property
    def prefix(self) -> str:
        return f"{pid_str(self.pid)}C{self.camid}T{self.tidx:04d}"

    def frame_name(self, f: int) -> str:
        return f"{self.prefix}F{f + 1:03d}.jpg"


@dataclass
class World:
    cfg: SynthConfig
    cameras: list
    persons: dict  # key -> Person
    train_pids: list
    test_pids: list
    lookalikes: list  # [{"pids": [a, b], "differs_in": detail}]


def pid_str(pid: int) -> str:
    """MARS folder/name spelling of a pid: 4 digits, junk -1 as ``00-1``."""
    if pid == -1:
        return "00-1"
    if not 0 <= pid <= 9999:
        raise ValueError(f"pid must be -1 or in 0..9999, got {pid}")
    return f"{pid:04d}"


def _validate(cfg: SynthConfig) -> None:
    if not isinstance(cfg, SynthConfig):
        raise TypeError(f"synth_cfg must be a SynthConfig, got {type(cfg).__name__}")

    def need(cond, msg):
        if not cond:
            raise ValueError(f"SynthConfig: {msg}")

    need(
        cfg.num_train_ids >= 2 and cfg.num_test_ids >= 2,
        f"num_train_ids and num_test_ids must be >= 2 (got {cfg.num_train_ids}, {cfg.num_test_ids})",
    )
    need(cfg.num_train_ids + cfg.num_test_ids <= 7000, "at most 7000 identities (4-digit pids)")
    need(2 <= cfg.num_cameras <= 6, f"num_cameras must be in 2..6 (MARS camids), got {cfg.num_cameras}")
    need(
        cfg.frame_height >= 32 and cfg.frame_width >= 16,
        f"frame size must be at least 32x16, got {cfg.frame_height}x{cfg.frame_width}",
    )
    need(
        1 <= cfg.min_len <= cfg.median_len <= cfg.max_len <= 999,
        "need 1 <= min_len <= median_len <= max_len <= 999 (MARS F field has 3 digits), got "
        f"{cfg.min_len}, {cfg.median_len}, {cfg.max_len}",
    )
    need(cfg.tracklets_per_id_cam > 0, "tracklets_per_id_cam must be > 0")
    need(0 <= cfg.lookalike_fraction <= 1, "lookalike_fraction must be in [0, 1]")
    need(
        cfg.num_distractor_tracklets >= 0 and cfg.num_junk_tracklets >= 0,
        "num_distractor_tracklets / num_junk_tracklets must be >= 0",
    )
    for k in NUISANCES:
        p = getattr(cfg, f"p_{k}")
        need(
            0 <= p <= MAX_NUISANCE_RATE,
            f"p_{k} must be in [0, {MAX_NUISANCE_RATE}] (rates are realised as runs), got {p}",
        )
    need(1 <= cfg.jpeg_quality <= 100, f"jpeg_quality must be in 1..100, got {cfg.jpeg_quality}")
    need(cfg.camera_variation >= 0, "camera_variation must be >= 0")


def _rng(cfg: SynthConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, *stream])


# --------------------------------------------------------------------------
# planning


def plan_nuisances(T: int, cfg: SynthConfig, rng: np.random.Generator) -> dict:
    """Planned per-frame nuisance runs of a tracklet of length T.

    Returns:
        {nuisance: bool array (T,)}; the expected per-frame rate of nuisance k
        over many tracklets is exactly ``cfg.p_<k>`` (see module docstring).
    """
    out = {}
    for k in NUISANCES:
        p = getattr(cfg, f"p_{k}")
        dist, anchor = _RUN_MODEL[k]
        flags = np.zeros(T, bool)
        q = p / _MEAN_FRACTION[dist]
        if p > 0 and rng.random() < q:
            f = rng.beta(2.0, 3.0) if dist == "beta" else rng.uniform(0.1, 0.5)
            n = min(T, int(math.floor(f * T + rng.random())))
            if n > 0:
                if rng.random() < anchor:  # tracker start-up / loss
                    if rng.random() < 0.5:
                        flags[:n] = True
                    else:
                        flags[T - n :] = True
                else:
                    gap = T - n
                    if n >= 6 and gap >= 1 and rng.random() < 0.35:  # two runs
                        n1 = int(rng.integers(2, n - 1))
                        u1, u2 = np.sort(rng.integers(0, gap, 2))  # gaps g0, g1 >= 1, g2
                        g0, g1 = int(u1), 1 + int(u2 - u1)
                        flags[g0 : g0 + n1] = True
                        flags[g0 + n1 + g1 : g0 + n + g1] = True
                    else:
                        s = int(rng.integers(0, gap + 1))
                        flags[s : s + n] = True
        out[k] = flags
    return out


def _draw_length(cfg: SynthConfig, rng, median: float | None = None) -> int:
    med = cfg.median_len if median is None else median
    x = rng.lognormal(math.log(med), 0.8)
    return int(np.clip(round(x), cfg.min_len, cfg.max_len))


def _draw_view(cam, rng) -> str:
    vs = list(cam.view_probs)
    p = np.asarray([cam.view_probs[v] for v in vs], float)
    return vs[int(rng.choice(len(vs), p=p / p.sum()))]


def build_world(cfg: SynthConfig) -> World:
    """Cameras, identities (with look-alike pairs) and extra pedestrians."""
    _validate(cfg)
    cams = R.make_cameras(cfg.num_cameras, _rng(cfg, 1), cfg.camera_variation)
    rng = _rng(cfg, 2)
    n = cfg.num_train_ids + cfg.num_test_ids
    hi = max(n, int(math.ceil(n * 1.3)))
    pids = np.sort(rng.choice(np.arange(1, hi + 1), n, replace=False))
    perm = rng.permutation(n)
    train = sorted(int(x) for x in pids[perm[: cfg.num_train_ids]])
    test = sorted(int(x) for x in pids[perm[cfg.num_train_ids :]])
    persons, looks = {}, []
    for ids in (train, test):
        order = [ids[i] for i in rng.permutation(len(ids))]
        n_pairs = int(round(cfg.lookalike_fraction * len(ids) / 2))
        for k in range(n_pairs):
            a, b = order[2 * k], order[2 * k + 1]
            persons[f"id{a}"] = R.sample_person(rng)
            persons[f"id{b}"], detail = R.derive_lookalike(persons[f"id{a}"], rng)
            looks.append({"pids": sorted([a, b]), "differs_in": detail})
        for pid in order[2 * n_pairs :]:
            persons[f"id{pid}"] = R.sample_person(rng)
    for k in range(N_CROWD):
        persons[f"crowd{k}"] = R.sample_person(rng)
    for k in range(max(1, cfg.num_distractor_tracklets // 2 + 1)):
        persons[f"distractor{k}"] = R.sample_person(rng)
    looks.sort(key=lambda d: d["pids"])
    return World(cfg, cams, persons, train, test, looks)


def plan_dataset(cfg: SynthConfig) -> tuple[World, list[TrackletPlan]]:
    """Decide every tracklet (identity, camera, length, view, nuisance runs).

    Cheap (no rendering); :func:`generate` renders exactly these plans.
    Plans are sorted as their frames appear in the name lists.
    """
    world = build_world(cfg)
    rng = _rng(cfg, 3)
    C = cfg.num_cameras
    ks = np.arange(2, C + 1)
    w = 0.55 ** (ks - 2.0)
    w /= w.sum()
    lam = max(0.0, cfg.tracklets_per_id_cam * C / float((ks * w).sum()) - 1.0)
    plans: list[TrackletPlan] = []
    counter: dict = {}

    def add(split, pid, cam, **kw):
        key = (pid, cam)
        counter[key] = counter.get(key, 0) + 1
        plans.append(TrackletPlan(split=split, pid=pid, camid=cam, tidx=counter[key], **kw))

    for split, ids in (("train", world.train_pids), ("test", world.test_pids)):
        for pid in ids:
            ncam = int(rng.choice(ks, p=w))
            for cam in sorted(int(c) + 1 for c in rng.choice(C, ncam, replace=False)):
                for _ in range(1 + int(rng.poisson(lam))):
                    T = _draw_length(cfg, rng)
                    raw = plan_nuisances(T, cfg, rng)
                    partner = None
                    if raw["id_switch"].any():
                        partner = int(rng.choice([p for p in ids if p != pid]))
                    add(
                        split,
                        pid,
                        cam,
                        length=T,
                        person=f"id{pid}",
                        view=_draw_view(world.cameras[cam - 1], rng),
                        raw=raw,
                        partner_pid=partner,
                    )
    ndis = max(1, cfg.num_distractor_tracklets // 2 + 1)
    for _ in range(cfg.num_distractor_tracklets):
        cam = int(rng.integers(1, C + 1))
        T = _draw_length(cfg, rng)
        raw = plan_nuisances(T, cfg, rng)
        partner = int(rng.choice(world.test_pids)) if raw["id_switch"].any() else None
        add(
            "test",
            0,
            cam,
            length=T,
            person=f"distractor{int(rng.integers(ndis))}",
            view=_draw_view(world.cameras[cam - 1], rng),
            kind="distractor",
            raw=raw,
            partner_pid=partner,
        )
    for _ in range(cfg.num_junk_tracklets):
        cam = int(rng.integers(1, C + 1))
        T = _draw_length(cfg, rng, median=max(cfg.min_len, cfg.median_len / 2))
        mode = rng.choice(["background", "fragment", "mixed"])
        frag = np.zeros(T, bool)
        if mode == "fragment":
            frag[:] = True
        elif mode == "mixed":
            cut = int(rng.integers(0, T + 1))
            frag[:cut] = True
            if rng.random() < 0.5:
                frag = ~frag
        jp = int(rng.choice(world.test_pids))
        add(
            "test",
            -1,
            cam,
            length=T,
            person=f"id{jp}" if frag.any() else None,
            view=_draw_view(world.cameras[cam - 1], rng),
            kind="junk",
            raw={k: np.zeros(T, bool) for k in NUISANCES},
            junk_fragment=frag,
            junk_pid=jp if frag.any() else None,
        )
    plans.sort(key=lambda p: (p.split != "train", p.prefix))
    for i, p in enumerate(plans):
        p.index = i
    return world, plans


def frame_annotations(plan: TrackletPlan) -> dict:
    """Per-frame ground truth of a plan: true_pid and the five 0/1 flags, each (T,)."""
    T = plan.length
    if plan.kind == "junk":
        frag = plan.junk_fragment
        return {
            "true_pid": np.where(frag, plan.junk_pid if plan.junk_pid is not None else NO_PERSON, NO_PERSON).astype(
                int
            ),
            "occlusion": np.zeros(T, int),
            "empty": (~frag).astype(int),
            "id_switch": np.zeros(T, int),
            "bad_crop": frag.astype(int),
            "blur": np.zeros(T, int),
        }
    raw = plan.raw
    empty = raw["empty"]
    sw = raw["id_switch"] & ~empty
    tp = np.full(T, plan.pid, int)
    if plan.partner_pid is not None:
        tp[sw] = plan.partner_pid
    tp[empty] = NO_PERSON
    return {
        "true_pid": tp,
        "occlusion": (raw["occlusion"] & ~empty).astype(int),
        "empty": empty.astype(int),
        "id_switch": sw.astype(int),
        "bad_crop": (raw["bad_crop"] & ~empty).astype(int),
        "blur": raw["blur"].astype(int),
    }


def choose_queries(cfg: SynthConfig, test_plans: list[TrackletPlan]) -> np.ndarray:
    """0-based rows of the test tracks that are queries (one per identity per camera)."""
    rng = _rng(cfg, 6)
    groups: dict = {}
    for i, p in enumerate(test_plans):
        if p.pid > 0:
            groups.setdefault(p.pid, {}).setdefault(p.camid, []).append(i)
    q = []
    for pid in sorted(groups):
        cams = groups[pid]
        if len(cams) < 2:  # no cross-camera match possible
            continue
        qcams = set(cams)
        # a query in camera c needs a non-query tracklet of its identity in another
        # camera (torchreid convention: the gallery is the non-query test tracks)
        gal = [c for c in cams if len(cams[c]) >= 2]
        if not gal:  # one tracklet per camera: leave one camera to the gallery
            qcams.discard(sorted(cams)[int(rng.integers(len(cams)))])
        elif len(gal) == 1:  # its only gallery camera cannot also hold a valid query
            qcams.discard(gal[0])
        for cam in sorted(qcams):
            rows = cams[cam]
            q.append(rows[int(rng.integers(len(rows)))])
    return np.asarray(sorted(q), int)


# --------------------------------------------------------------------------
# rendering one tracklet


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous True runs of a bool vector as (start, stop) pairs."""
    d = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _gait(person, T, rng):
    phi = rng.uniform(0, 2 * np.pi) + person.gait_speed * rng.uniform(0.9, 1.1) * np.arange(T)
    idx = (np.floor((phi % (2 * np.pi)) / (2 * np.pi) * R.NPH).astype(int)) % R.NPH
    return phi, idx


def render_tracklet(plan: TrackletPlan, world: World, backgrounds: list, atlases: R.AtlasCache, ppu: int) -> np.ndarray:
    """Render one planned tracklet; returns uint8 (T, H, W, 3)."""
    cfg = world.cfg
    rng = _rng(cfg, 5, plan.index)
    cam = world.cameras[plan.camid - 1]
    T, H, W = plan.length, cfg.frame_height, cfg.frame_width
    wu = W / H
    t = np.arange(T, dtype=np.float32)
    jit = cam.jitter

    def walk(sd, lim):
        return np.clip(np.cumsum(rng.normal(0, sd, T)), -lim, lim)

    # detector box: smooth drift (tracker) + per-frame jitter (detector)
    base_person = world.persons[plan.person] if plan.person else world.persons["crowd0"]
    s0 = min(0.97, base_person.height * rng.uniform(0.94, 1.05))
    xc = wu / 2 + rng.normal(0, 0.01) + walk(0.004 * jit, 0.04) + rng.normal(0, 0.006 * jit, T)
    yf = rng.uniform(0.95, 0.985) + walk(0.003 * jit, 0.03) + rng.normal(0, 0.005 * jit, T)
    s = s0 * np.exp(walk(0.008 * jit, 0.12) + rng.normal(0, 0.012 * jit, T))

    # background window: scrolls with a profile walker, zooms with a frontal one
    side = 1.0 if plan.view == "right" else -1.0 if plan.view == "left" else 0.0
    vx = side * rng.uniform(0.012, 0.03) if side else rng.normal(0, 0.004)
    zr = {"front": 0.003, "back": -0.003}.get(plan.view, 0.0)
    bg_z = np.clip(rng.uniform(0.95, 1.1) * np.exp(zr * t), 0.7, 1.4).astype(np.float32)
    bg_x0 = (rng.uniform(0, R.SCENE_W) + vx * t).astype(np.float32)
    hfrac = rng.uniform(0.5, 0.7)
    bg_y0 = (cam.horizon - bg_z * hfrac).astype(np.float32)

    ann = frame_annotations(plan)
    layers, occluders = [], []
    blur_len = np.zeros(T, np.float32)
    gain = rng.uniform(0.85, 1.15)

    if plan.kind == "junk":
        frag = plan.junk_fragment
        if frag.any():
            pj = world.persons[plan.person]
            phi, ph = _gait(pj, T, rng)
            zoom = rng.uniform(1.6, 2.8)
            fx = xc + rng.choice([-1, 1]) * rng.uniform(0.05, 0.2)
            fy = yf + rng.uniform(-0.2, 0.9) * s0 * zoom * 0.5
            fr = np.flatnonzero(frag)
            layers.append(
                R.Layer(
                    atlases.get(plan.person, pj, plan.view),
                    fr,
                    ph[fr],
                    fx[fr].astype(np.float32),
                    fy[fr].astype(np.float32),
                    (s[fr] * zoom).astype(np.float32),
                )
            )
        bg_keep = ~frag
        if bg_keep.any() and rng.random() < 0.5:  # clutter: a pole in the empty box
            fr = np.flatnonzero(bg_keep)
            occluders.append(
                R.ShapeOccluder(
                    "pole",
                    fr,
                    (xc[fr] + rng.uniform(-0.1, 0.1)).astype(np.float32),
                    float(rng.uniform(0.05, 0.12)),
                    0.0,
                    np.asarray(cam.palette[int(rng.integers(6))], np.float32) * 0.7,
                )
            )
        return R.compose_frames(
            T,
            cam,
            backgrounds[plan.camid - 1],
            ppu,
            (H, W),
            bg_x0,
            bg_y0,
            bg_z,
            layers,
            None,
            occluders,
            blur_len,
            gain,
            rng,
        )

    person = world.persons[plan.person]
    phi, ph = _gait(person, T, rng)
    yf = yf - 0.01 * np.abs(np.sin(phi))  # vertical bob of the gait
    raw = plan.raw
    empty = raw["empty"]

    # bad crops: one failure mode per run, held with small variation
    bad = raw["bad_crop"] & ~empty
    for a, b in _runs(bad):
        n = b - a
        mode = rng.choice(["shift_x", "shift_y", "tight", "loose"])
        if mode == "shift_x":
            xc[a:b] += rng.choice([-1, 1]) * rng.uniform(0.13, 0.22) + rng.normal(0, 0.01, n)
        elif mode == "shift_y":
            yf[a:b] += rng.choice([-1, 1]) * rng.uniform(0.18, 0.32) + rng.normal(0, 0.01, n)
        elif mode == "tight":
            z = rng.uniform(1.45, 1.9)
            yf[a:b] += (z - 1) * s[a:b] * rng.uniform(0.2, 0.6)
            s[a:b] *= z
        else:
            s[a:b] *= rng.uniform(0.5, 0.65)
            yf[a:b] -= rng.uniform(0.0, 0.25)

    xc, yf, s = xc.astype(np.float32), yf.astype(np.float32), s.astype(np.float32)
    main = ~empty & ~(raw["id_switch"] & ~empty)
    fr = np.flatnonzero(main)
    layers.append(R.Layer(atlases.get(plan.person, person, plan.view), fr, ph[fr], xc[fr], yf[fr], s[fr]))
    sw = np.flatnonzero(raw["id_switch"] & ~empty)
    if len(sw):
        pkey = f"id{plan.partner_pid}"
        partner = world.persons[pkey]
        _, pph = _gait(partner, T, rng)
        pview = _draw_view(cam, rng)
        pscale = partner.height / person.height
        layers.append(
            R.Layer(
                atlases.get(pkey, partner, pview),
                sw,
                pph[sw],
                xc[sw] + np.float32(rng.normal(0, 0.02)),
                yf[sw],
                s[sw] * np.float32(pscale),
            )
        )
    vis = np.flatnonzero(~empty)
    shadows = (vis, xc[vis], yf[vis], s[vis])

    # occlusion runs: a passing pedestrian or a scene object in front of the person
    occ = raw["occlusion"] & ~empty
    for a, b in _runs(occ):
        fr = np.arange(a, b)
        n = b - a
        kind = str(rng.choice(cam.occluders))
        sgn = rng.choice([-1, 1])
        frac = np.linspace(0, 1, n, dtype=np.float32) if n > 1 else np.full(1, 0.5, np.float32)
        if kind == "person":
            ck = f"crowd{int(rng.integers(N_CROWD))}"
            cp = world.persons[ck]
            _, cph = _gait(cp, T, rng)
            d0, d1 = sgn * rng.uniform(0.04, 0.13), -sgn * rng.uniform(0.04, 0.13)
            ox = xc[fr] + d0 + (d1 - d0) * frac
            so = s[fr] * np.float32(rng.uniform(1.05, 1.3))
            oy = yf[fr] + np.float32(rng.uniform(0.03, 0.2))
            layers.append(
                R.Layer(
                    atlases.get(ck, cp, str(rng.choice(["left", "right", "front", "back"]))),
                    fr,
                    cph[fr],
                    ox.astype(np.float32),
                    oy.astype(np.float32),
                    so,
                )
            )
            continue
        col = np.asarray(cam.palette[int(rng.integers(6))], np.float32) * rng.uniform(0.5, 0.9)
        if kind == "pole":
            d0, d1 = sgn * rng.uniform(0.0, 0.07), -sgn * rng.uniform(0.0, 0.07)
            width, top = rng.uniform(0.05, 0.1), 0.0
        elif kind == "car":
            d0 = d1 = 0.0
            width, top = 3.0, rng.uniform(0.45, 0.62)
            col = np.asarray(R.UPPER_COLORS[str(rng.choice(list(R.UPPER_COLORS)))], np.float32) / 255
        elif kind == "bush":
            d0, d1 = sgn * rng.uniform(0.0, 0.1), -sgn * rng.uniform(0.0, 0.1)
            width, top = rng.uniform(0.5, 1.0), rng.uniform(0.55, 0.7)
            col = np.asarray([0.2, 0.4, 0.15], np.float32) * rng.uniform(0.7, 1.2)
        else:  # bench / bin
            d0, d1 = sgn * rng.uniform(0.0, 0.08), -sgn * rng.uniform(0.0, 0.08)
            width, top = rng.uniform(0.22, 0.6), rng.uniform(0.58, 0.76)
        ox = (xc[fr] + d0 + (d1 - d0) * frac).astype(np.float32)
        occluders.append(R.ShapeOccluder(kind, fr, ox, float(width), float(top), col))

    for a, b in _runs(raw["blur"]):
        blur_len[a:b] = rng.uniform(2.5, 6.0) * (0.8 + 0.4 * rng.random(b - a))

    return R.compose_frames(
        T,
        cam,
        backgrounds[plan.camid - 1],
        ppu,
        (H, W),
        bg_x0,
        bg_y0,
        bg_z,
        layers,
        shadows,
        occluders,
        blur_len,
        gain,
        rng,
    )


# --------------------------------------------------------------------------
# writing

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


def generate(synth_cfg: SynthConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """Write a complete synthetic dataset in MARS layout into ``out_dir``.

    Args:
        synth_cfg: the ``SynthConfig`` (deterministic from ``seed``).
        out_dir: an empty or non-existent directory.
        progress: show a tqdm bar over tracklets.
    Returns:
        Summary stats: identities, train/test identities, tracklets, frames,
        queries, junk and distractor tracklets, MB, seconds.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"generate: out_dir {out_dir} must be empty or not exist")
    world, plans = plan_dataset(synth_cfg)
    cfg = synth_cfg
    ppu = cfg.frame_height
    backgrounds = [R.make_background(c, _rng(cfg, 4, c.camid), ppu) for c in world.cameras]
    atlases = R.AtlasCache(cfg.frame_height)
    (out_dir / "info").mkdir(parents=True, exist_ok=True)
    ann_lines = [ANNOTATION_HEADER]
    n_bytes, split_rows, tracklet_meta = 0, {}, []
    bar = tqdm(total=len(plans), desc="synthetic MARS", unit="tracklet", disable=not progress)
    for split in ("train", "test"):
        names, rows = [], []
        sp = [p for p in plans if p.split == split]
        for p in sp:
            frames = render_tracklet(p, world, backgrounds, atlases, ppu)
            q = max(30, cfg.jpeg_quality - world.cameras[p.camid - 1].jpeg_drop)
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
        split_rows[split] = (names, np.asarray(rows, np.float64).reshape(-1, 4), sp)
    bar.close()

    info = out_dir / "info"
    for split in ("train", "test"):
        names, rows, _ = split_rows[split]
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (info / f"tracks_{split}_info.mat").write_bytes(_savemat_bytes(f"track_{split}_info", rows))
    qidx = choose_queries(cfg, split_rows["test"][2])
    (info / "query_IDX.mat").write_bytes(_savemat_bytes("query_IDX", (qidx + 1).astype(np.float64).reshape(1, -1)))
    (info / "annotations.csv").write_text("\n".join(ann_lines) + "\n")

    n_frames = sum(len(split_rows[s][0]) for s in split_rows)
    meta = {
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
    (info / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    seconds = time.perf_counter() - t0
    n_trk = len(plans)
    return {
        "identities": cfg.num_train_ids + cfg.num_test_ids,
        "train_ids": cfg.num_train_ids,
        "test_ids": cfg.num_test_ids,
        "tracklets": n_trk,
        "train_tracklets": len(split_rows["train"][2]),
        "test_tracklets": len(split_rows["test"][2]),
        "queries": int(len(qidx)),
        "junk_tracklets": sum(p.kind == "junk" for p in plans),
        "distractor_tracklets": sum(p.kind == "distractor" for p in plans),
        "frames": n_frames,
        "MB": round(n_bytes / 2**20, 2),
        "seconds": round(seconds, 2),
    }


def dataset_key(synth_cfg: SynthConfig) -> str:
    """Cache key of a generated dataset: the config hash plus the generator version."""
    return f"{config_key(synth_cfg)}-v{GENERATOR_VERSION}"


def ensure_synthetic(synth_cfg: SynthConfig, cache_root: str | Path, verbose: bool = True) -> Path:
    """The dataset for ``synth_cfg`` under ``cache_root``, generated on first use.

    A missing, partial or corrupt entry is (re)built atomically by the artifact
    cache; a complete one is reused. Prints identities, tracklets, frames, MB
    and the generation time.
    """
    from reid_utils.cache import COMPLETE_MARKER, ArtifactCache

    _validate(synth_cfg)
    stats: dict = {}

    def build(tmp: Path):
        stats.update(generate(synth_cfg, tmp, progress=verbose))

    path = ArtifactCache(cache_root).get_or_build_dir(
        "synthetic", dataset_key(synth_cfg), build, meta=stats, verbose=verbose
    )
    if verbose:
        built = bool(stats)
        if not built:
            try:
                stats = json.loads((path / COMPLETE_MARKER).read_text()).get("meta", {})
            except (OSError, ValueError):
                stats = {}
        if stats:
            print(
                f"[synth] {'generated' if built else 'cached'} {path.name}: "
                f"{stats['identities']} identities ({stats['train_ids']} train / "
                f"{stats['test_ids']} test), {stats['tracklets']} tracklets "
                f"({stats['queries']} queries, {stats['distractor_tracklets']} distractor, "
                f"{stats['junk_tracklets']} junk), {stats['frames']} frames, {stats['MB']} MB; "
                f"generation took {stats['seconds']} s"
            )
    return path
