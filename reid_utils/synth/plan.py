"""The plan of a synthetic dataset: world, tracklets, per-frame ground truth, queries.

Everything is decided here before any rendering, deterministic from
``SynthConfig.seed`` (one random stream per purpose, :func:`rng_for`).
Design choices (MARS-like, Sec. 4.1 of the paper):

* Splits: identities are disjoint between train and test; pids are drawn
  without replacement from 1..~1.3N and interleave between the splits. Junk
  (pid -1) and distractor (pid 0) tracklets occur only in the test split.
* Tracklets per identity: 2..C cameras (fewer more likely), each with
  ``1 + Poisson(lam)`` tracklets, ``lam`` set so the mean per identity is
  ``tracklets_per_id_cam * C``; every identity appears in >= 2 cameras.
* Lengths: log-normal around ``median_len`` (sigma ``len_sigma``), clipped to
  [``min_len``, ``max_len``]: heavy tailed with many short tracklets. The default
  profile matches MARS's length statistics (median 33, mean 58, tail to 920 frames),
  so that a 32-frame test clip, or 16 clips of 4 frames, need no repeated frames in
  about half of the tracklets, as on MARS.
* Queries: one tracklet per test identity per camera, each with a match in
  another camera of the gallery; junk and distractors are never queries.
* Nuisance runs: :mod:`reid_utils.synth.nuisances`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from reid_utils.config import SynthConfig
from reid_utils.synth.cameras import make_cameras
from reid_utils.synth.nuisances import MAX_NUISANCE_RATE, NUISANCES, plan_nuisances
from reid_utils.synth.people import derive_lookalike, sample_person

NO_PERSON = -2
N_CROWD = 24  # extra pedestrians used only as passing occluders


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


def validate(cfg: SynthConfig) -> None:
    """Raise TypeError / ValueError (naming the field) for an unusable ``SynthConfig``."""
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
    need(0 < cfg.len_sigma <= 3, f"len_sigma must be in (0, 3], got {cfg.len_sigma}")
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


def rng_for(cfg: SynthConfig, *stream: int) -> np.random.Generator:
    """The random stream ``stream`` of the dataset: 1 cameras, 2 people, 3 tracklet plans,
    4 backgrounds (+ camid), 5 rendering (+ tracklet index), 6 queries."""
    return np.random.default_rng([cfg.seed, *stream])


def _draw_length(cfg: SynthConfig, rng, median: float | None = None) -> int:
    med = cfg.median_len if median is None else median
    x = rng.lognormal(math.log(med), cfg.len_sigma)
    return int(np.clip(round(x), cfg.min_len, cfg.max_len))


def draw_view(cam, rng) -> str:
    """A viewpoint drawn from the camera's view distribution."""
    vs = list(cam.view_probs)
    p = np.asarray([cam.view_probs[v] for v in vs], float)
    return vs[int(rng.choice(len(vs), p=p / p.sum()))]


def build_world(cfg: SynthConfig) -> World:
    """Cameras, identities (with look-alike pairs) and extra pedestrians."""
    validate(cfg)
    cams = make_cameras(cfg.num_cameras, rng_for(cfg, 1), cfg.camera_variation)
    rng = rng_for(cfg, 2)
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
            persons[f"id{a}"] = sample_person(rng)
            persons[f"id{b}"], detail = derive_lookalike(persons[f"id{a}"], rng)
            looks.append({"pids": sorted([a, b]), "differs_in": detail})
        for pid in order[2 * n_pairs :]:
            persons[f"id{pid}"] = sample_person(rng)
    for k in range(N_CROWD):
        persons[f"crowd{k}"] = sample_person(rng)
    for k in range(max(1, cfg.num_distractor_tracklets // 2 + 1)):
        persons[f"distractor{k}"] = sample_person(rng)
    looks.sort(key=lambda d: d["pids"])
    return World(cfg, cams, persons, train, test, looks)


class _Plans(list):
    """The growing list of plans; numbers the tracklets of each (pid, camid)."""

    def __init__(self):
        super().__init__()
        self.counter: dict = {}

    def add(self, split, pid, cam, **kw):
        key = (pid, cam)
        self.counter[key] = self.counter.get(key, 0) + 1
        self.append(TrackletPlan(split=split, pid=pid, camid=cam, tidx=self.counter[key], **kw))


def _plan_identities(world: World, cfg: SynthConfig, rng, plans: _Plans) -> None:
    """The identities' tracklets: cameras, tracklets per camera, lengths, views, nuisances."""
    C = cfg.num_cameras
    ks = np.arange(2, C + 1)
    w = 0.55 ** (ks - 2.0)
    w /= w.sum()
    lam = max(0.0, cfg.tracklets_per_id_cam * C / float((ks * w).sum()) - 1.0)
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
                    plans.add(
                        split,
                        pid,
                        cam,
                        length=T,
                        person=f"id{pid}",
                        view=draw_view(world.cameras[cam - 1], rng),
                        raw=raw,
                        partner_pid=partner,
                    )


def _plan_distractors(world: World, cfg: SynthConfig, rng, plans: _Plans) -> None:
    """Distractor tracklets (pid 0, test split): people who are not identities."""
    ndis = max(1, cfg.num_distractor_tracklets // 2 + 1)
    for _ in range(cfg.num_distractor_tracklets):
        cam = int(rng.integers(1, cfg.num_cameras + 1))
        T = _draw_length(cfg, rng)
        raw = plan_nuisances(T, cfg, rng)
        partner = int(rng.choice(world.test_pids)) if raw["id_switch"].any() else None
        plans.add(
            "test",
            0,
            cam,
            length=T,
            person=f"distractor{int(rng.integers(ndis))}",
            view=draw_view(world.cameras[cam - 1], rng),
            kind="distractor",
            raw=raw,
            partner_pid=partner,
        )


def _plan_junk(world: World, cfg: SynthConfig, rng, plans: _Plans) -> None:
    """Junk tracklets (pid -1, test split): background only, a fragment of a test
    identity (flagged ``bad_crop``), or both in two parts."""
    for _ in range(cfg.num_junk_tracklets):
        cam = int(rng.integers(1, cfg.num_cameras + 1))
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
        plans.add(
            "test",
            -1,
            cam,
            length=T,
            person=f"id{jp}" if frag.any() else None,
            view=draw_view(world.cameras[cam - 1], rng),
            kind="junk",
            raw={k: np.zeros(T, bool) for k in NUISANCES},
            junk_fragment=frag,
            junk_pid=jp if frag.any() else None,
        )


def plan_dataset(cfg: SynthConfig) -> tuple[World, list[TrackletPlan]]:
    """Decide every tracklet (identity, camera, length, view, nuisance runs).

    Cheap (no rendering); :func:`reid_utils.synth.writer.generate` renders
    exactly these plans. Plans are sorted as their frames appear in the name lists.
    """
    world = build_world(cfg)
    rng = rng_for(cfg, 3)
    plans = _Plans()
    _plan_identities(world, cfg, rng, plans)
    _plan_distractors(world, cfg, rng, plans)
    _plan_junk(world, cfg, rng, plans)
    plans = sorted(plans, key=lambda p: (p.split != "train", p.prefix))
    for i, p in enumerate(plans):
        p.index = i
    return world, plans


def frame_annotations(plan: TrackletPlan) -> dict:
    """Per-frame ground truth of a plan: true_pid and the five 0/1 flags, each (T,).

    ``empty``: no person in the box (``true_pid = NO_PERSON``); on empty frames
    occlusion, id_switch and bad_crop are 0. ``id_switch``: another identity
    fills the box (``true_pid`` = that identity). ``occlusion``: an object or a
    passing pedestrian covers a substantial part of the body. ``bad_crop``: the
    box is shifted, too tight or too loose. ``blur``: motion blur (defocus and
    low resolution are camera properties, not flagged). Distractor frames have
    ``true_pid = 0``; junk frames are background (``empty``) or a fragment of a
    test identity (``bad_crop``, ``true_pid`` = that identity).
    """
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
    rng = rng_for(cfg, 6)
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
