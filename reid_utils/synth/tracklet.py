"""Rendering one planned tracklet: detector box, background window, layers, nuisances.

:func:`render_tracklet` turns a :class:`reid_utils.synth.plan.TrackletPlan` into
frames with its own random stream. The detector box drifts smoothly (tracker)
with per-frame jitter (detector); the background window scrolls with a profile
walker and zooms with a frontal one. The planned nuisance runs become: a bad
crop mode per run (shifted, too tight, too loose); the partner identity's
sprite on id-switch frames; a passing pedestrian or a scene object (pole, car,
bush, bench, bin) per occlusion run; a motion-blur length per blurred frame.
Junk tracklets show background (with clutter) or a zoomed fragment of a person.
Frames are composed by :func:`reid_utils.synth.compose.compose_frames`.
"""

from __future__ import annotations

import numpy as np

from reid_utils.synth.atlas import NPH, AtlasCache
from reid_utils.synth.compose import Layer, ShapeOccluder, compose_frames
from reid_utils.synth.nuisances import runs
from reid_utils.synth.people import UPPER_COLORS
from reid_utils.synth.plan import N_CROWD, TrackletPlan, World, draw_view, rng_for
from reid_utils.synth.scenes import SCENE_W


def _gait(person, T, rng):
    """Gait phase angle (T,) and atlas phase index (T,) of ``person`` over T frames."""
    phi = rng.uniform(0, 2 * np.pi) + person.gait_speed * rng.uniform(0.9, 1.1) * np.arange(T)
    idx = (np.floor((phi % (2 * np.pi)) / (2 * np.pi) * NPH).astype(int)) % NPH
    return phi, idx


def _walk(rng, T: int, sd: float, lim: float) -> np.ndarray:
    """A clipped random walk (T,): smooth tracker drift."""
    return np.clip(np.cumsum(rng.normal(0, sd, T)), -lim, lim)


def _box_track(plan: TrackletPlan, world: World, cam, rng, T: int):
    """Detector box per frame: smooth drift (tracker) + per-frame jitter (detector).

    Returns:
        (s0, xc, yf, s): nominal height; body axis x, feet y and height, each (T,)
        float64, in frame-height units.
    """
    cfg = world.cfg
    wu = cfg.frame_width / cfg.frame_height
    jit = cam.jitter
    base_person = world.persons[plan.person] if plan.person else world.persons["crowd0"]
    s0 = min(0.97, base_person.height * rng.uniform(0.94, 1.05))
    xc = wu / 2 + rng.normal(0, 0.01) + _walk(rng, T, 0.004 * jit, 0.04) + rng.normal(0, 0.006 * jit, T)
    yf = rng.uniform(0.95, 0.985) + _walk(rng, T, 0.003 * jit, 0.03) + rng.normal(0, 0.005 * jit, T)
    s = s0 * np.exp(_walk(rng, T, 0.008 * jit, 0.12) + rng.normal(0, 0.012 * jit, T))
    return s0, xc, yf, s


def _background_window(plan: TrackletPlan, cam, rng, T: int):
    """Scene window per frame: scrolls with a profile walker, zooms with a frontal one.

    Returns:
        (bg_x0, bg_y0, bg_z): float32 (T,) each.
    """
    t = np.arange(T, dtype=np.float32)
    side = 1.0 if plan.view == "right" else -1.0 if plan.view == "left" else 0.0
    vx = side * rng.uniform(0.012, 0.03) if side else rng.normal(0, 0.004)
    zr = {"front": 0.003, "back": -0.003}.get(plan.view, 0.0)
    bg_z = np.clip(rng.uniform(0.95, 1.1) * np.exp(zr * t), 0.7, 1.4).astype(np.float32)
    bg_x0 = (rng.uniform(0, SCENE_W) + vx * t).astype(np.float32)
    hfrac = rng.uniform(0.5, 0.7)
    bg_y0 = (cam.horizon - bg_z * hfrac).astype(np.float32)
    return bg_x0, bg_y0, bg_z


def _junk(plan, world, cam, rng, atlases, T, box, layers, occluders) -> None:
    """A junk tracklet: a zoomed fragment of a person on fragment frames, maybe a pole
    as clutter on the background frames (appends to ``layers`` / ``occluders``)."""
    s0, xc, yf, s = box
    frag = plan.junk_fragment
    if frag.any():
        pj = world.persons[plan.person]
        phi, ph = _gait(pj, T, rng)
        zoom = rng.uniform(1.6, 2.8)
        fx = xc + rng.choice([-1, 1]) * rng.uniform(0.05, 0.2)
        fy = yf + rng.uniform(-0.2, 0.9) * s0 * zoom * 0.5
        fr = np.flatnonzero(frag)
        layers.append(
            Layer(
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
            ShapeOccluder(
                "pole",
                fr,
                (xc[fr] + rng.uniform(-0.1, 0.1)).astype(np.float32),
                float(rng.uniform(0.05, 0.12)),
                0.0,
                np.asarray(cam.palette[int(rng.integers(6))], np.float32) * 0.7,
            )
        )


def _bad_crops(bad: np.ndarray, xc, yf, s, rng) -> None:
    """One failure mode per bad-crop run, held with small variation (edits the box in place)."""
    for a, b in runs(bad):
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


def _identity_layers(plan, world, cam, rng, atlases, T, ph, xc, yf, s, layers) -> None:
    """The identity's sprite on its visible frames, the partner's on id-switch frames."""
    person = world.persons[plan.person]
    raw = plan.raw
    empty = raw["empty"]
    main = ~empty & ~(raw["id_switch"] & ~empty)
    fr = np.flatnonzero(main)
    layers.append(Layer(atlases.get(plan.person, person, plan.view), fr, ph[fr], xc[fr], yf[fr], s[fr]))
    sw = np.flatnonzero(raw["id_switch"] & ~empty)
    if len(sw):
        pkey = f"id{plan.partner_pid}"
        partner = world.persons[pkey]
        _, pph = _gait(partner, T, rng)
        pview = draw_view(cam, rng)
        pscale = partner.height / person.height
        layers.append(
            Layer(
                atlases.get(pkey, partner, pview),
                sw,
                pph[sw],
                xc[sw] + np.float32(rng.normal(0, 0.02)),
                yf[sw],
                s[sw] * np.float32(pscale),
            )
        )


def _passing_person(world, rng, atlases, T, fr, frac, sgn, xc, yf, s) -> Layer:
    """A crowd pedestrian crossing in front of the person on frames ``fr``."""
    ck = f"crowd{int(rng.integers(N_CROWD))}"
    cp = world.persons[ck]
    _, cph = _gait(cp, T, rng)
    d0, d1 = sgn * rng.uniform(0.04, 0.13), -sgn * rng.uniform(0.04, 0.13)
    ox = xc[fr] + d0 + (d1 - d0) * frac
    so = s[fr] * np.float32(rng.uniform(1.05, 1.3))
    oy = yf[fr] + np.float32(rng.uniform(0.03, 0.2))
    return Layer(
        atlases.get(ck, cp, str(rng.choice(["left", "right", "front", "back"]))),
        fr,
        cph[fr],
        ox.astype(np.float32),
        oy.astype(np.float32),
        so,
    )


def _scene_object(kind: str, cam, rng, fr, frac, sgn, xc) -> ShapeOccluder:
    """A pole, car, bush, bench or bin in front of the person on frames ``fr``."""
    col = np.asarray(cam.palette[int(rng.integers(6))], np.float32) * rng.uniform(0.5, 0.9)
    if kind == "pole":
        d0, d1 = sgn * rng.uniform(0.0, 0.07), -sgn * rng.uniform(0.0, 0.07)
        width, top = rng.uniform(0.05, 0.1), 0.0
    elif kind == "car":
        d0 = d1 = 0.0
        width, top = 3.0, rng.uniform(0.45, 0.62)
        col = np.asarray(UPPER_COLORS[str(rng.choice(list(UPPER_COLORS)))], np.float32) / 255
    elif kind == "bush":
        d0, d1 = sgn * rng.uniform(0.0, 0.1), -sgn * rng.uniform(0.0, 0.1)
        width, top = rng.uniform(0.5, 1.0), rng.uniform(0.55, 0.7)
        col = np.asarray([0.2, 0.4, 0.15], np.float32) * rng.uniform(0.7, 1.2)
    else:  # bench / bin
        d0, d1 = sgn * rng.uniform(0.0, 0.08), -sgn * rng.uniform(0.0, 0.08)
        width, top = rng.uniform(0.22, 0.6), rng.uniform(0.58, 0.76)
    ox = (xc[fr] + d0 + (d1 - d0) * frac).astype(np.float32)
    return ShapeOccluder(kind, fr, ox, float(width), float(top), col)


def _occlusions(plan, world, cam, rng, atlases, T, xc, yf, s, layers, occluders) -> None:
    """Per occlusion run: a passing pedestrian (a layer) or a scene object (an occluder)."""
    raw = plan.raw
    occ = raw["occlusion"] & ~raw["empty"]
    for a, b in runs(occ):
        fr = np.arange(a, b)
        n = b - a
        kind = str(rng.choice(cam.occluders))
        sgn = rng.choice([-1, 1])
        frac = np.linspace(0, 1, n, dtype=np.float32) if n > 1 else np.full(1, 0.5, np.float32)
        if kind == "person":
            layers.append(_passing_person(world, rng, atlases, T, fr, frac, sgn, xc, yf, s))
        else:
            occluders.append(_scene_object(kind, cam, rng, fr, frac, sgn, xc))


def render_tracklet(plan: TrackletPlan, world: World, backgrounds: list, atlases: AtlasCache, ppu: int) -> np.ndarray:
    """Render one planned tracklet.

    Args:
        backgrounds: one scene per camera (``scenes.make_background``), in camid order.
        ppu: scene pixels per frame-height unit.
    Returns:
        uint8 (T, H, W, 3).
    """
    cfg = world.cfg
    rng = rng_for(cfg, 5, plan.index)
    cam = world.cameras[plan.camid - 1]
    T, H, W = plan.length, cfg.frame_height, cfg.frame_width
    s0, xc, yf, s = _box_track(plan, world, cam, rng, T)
    bg_x0, bg_y0, bg_z = _background_window(plan, cam, rng, T)
    layers, occluders = [], []
    blur_len = np.zeros(T, np.float32)
    gain = rng.uniform(0.85, 1.15)
    bg = backgrounds[plan.camid - 1]
    if plan.kind == "junk":
        _junk(plan, world, cam, rng, atlases, T, (s0, xc, yf, s), layers, occluders)
        return compose_frames(T, cam, bg, ppu, (H, W), bg_x0, bg_y0, bg_z, layers, None, occluders, blur_len, gain, rng)

    phi, ph = _gait(world.persons[plan.person], T, rng)
    yf = yf - 0.01 * np.abs(np.sin(phi))  # vertical bob of the gait
    raw = plan.raw
    empty = raw["empty"]
    _bad_crops(raw["bad_crop"] & ~empty, xc, yf, s, rng)
    xc, yf, s = xc.astype(np.float32), yf.astype(np.float32), s.astype(np.float32)
    _identity_layers(plan, world, cam, rng, atlases, T, ph, xc, yf, s, layers)
    vis = np.flatnonzero(~empty)
    shadows = (vis, xc[vis], yf[vis], s[vis])
    _occlusions(plan, world, cam, rng, atlases, T, xc, yf, s, layers, occluders)
    for a, b in runs(raw["blur"]):
        blur_len[a:b] = rng.uniform(2.5, 6.0) * (0.8 + 0.4 * rng.random(b - a))
    return compose_frames(T, cam, bg, ppu, (H, W), bg_x0, bg_y0, bg_z, layers, shadows, occluders, blur_len, gain, rng)
