"""A pedestrian's sprite atlas: one (person, view) drawn at ``NPH`` gait phases.

A person is rendered ``front``, ``back``, ``left`` or ``right`` (left is the
mirrored right view); legs and arms swing with the gait phase. Each (person,
view) is drawn once, at ``ATLAS_SS`` x its size and box-filtered (anti-aliased),
with a cylindrical shading, and kept in an LRU :class:`AtlasCache`;
:mod:`reid_utils.synth.compose` warps it into every frame. The body parts are
painted by :mod:`reid_utils.synth.parts`.

Geometry convention: body units with the top of the head at ``v = 0`` and the
soles at ``v = 1``; ``u`` is horizontal, 0 on the body axis.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np

from reid_utils.synth import parts as P
from reid_utils.synth.people import Person

NPH = 8  # gait phases per atlas
V0, V1 = -0.04, 1.04  # sprite vertical extent (body units)
U_HALF = 0.42  # sprite half width (body units)
VIEWS = ("front", "back", "left", "right")
ATLAS_SS = 2  # atlases are drawn at 2x and box-filtered (anti-aliasing)
NOMINAL_SCALE = 0.87  # body height / frame height the atlas resolution is tuned for


def sprite_shape(frame_height: int) -> tuple[int, int]:
    """Atlas size (SH, SW) so that one atlas pixel ~ one output pixel at nominal scale."""
    sh = max(32, int(round(NOMINAL_SCALE * frame_height * (V1 - V0))))
    sw = int(round(sh * 2 * U_HALF / (V1 - V0)))
    return sh, sw


def _garment(p: Person, u, v, sh_v: float, shape: tuple[int, int]):
    """Upper-garment colour fields (pattern in body coordinates): garment and sleeve, (1, SH, SW, 3)."""
    c1, c2 = P.col(p.upper_color), P.col(p.upper_color2)
    per = p.stripe_period
    if p.upper_pattern == "hstripes":
        pm = ((v - sh_v) / per) % 1.0 < 0.5
    elif p.upper_pattern == "vstripes":
        pm = ((u / per + 0.25) % 1.0 < 0.5) & (v > -1)
    elif p.upper_pattern == "checks":
        pm = (((v - sh_v) / per) % 1.0 < 0.5) ^ ((u / per + 0.25) % 1.0 < 0.5)
    else:
        pm = np.zeros((1, *shape), bool)
    garment = np.where(pm[..., None], c2, c1)  # (1, SH, SW, 3)
    sleeve = np.broadcast_to(c2, garment.shape) if p.upper_pattern == "twotone" else garment
    return garment, sleeve


def _measure(p: Person, view: str, u, v, shape: tuple[int, int]) -> P.Body:
    """Body measurements, colours and garment fields of ``p`` seen from ``view``."""
    side = view == "right"
    b = p.build
    hr = p.head_r
    sh_v = 2 * hr + 0.035
    hip_v = 1.0 - p.leg_frac
    arm_r = 0.029 * b
    garment, sleeve = _garment(p, u, v, sh_v, shape)
    return P.Body(
        p=p,
        u=u,
        v=v,
        side=side,
        back=view == "back",
        front=view == "front",
        b=b,
        hr=hr,
        uh=0.012 if side else 0.0,
        vh=hr + 0.004,
        sh_v=sh_v,
        hip_v=hip_v,
        shoulder_w=0.118 * b,
        hip_w=0.105 * b * p.hips,
        depth=0.075 * b,
        arm_r=arm_r,
        leg_r=0.04 * b,
        arm_len=hip_v + 0.07 - sh_v,
        leg_len=0.972 - hip_v,
        skin=P.col(p.skin),
        hairc=P.col(p.hair_color),
        c1=P.col(p.upper_color),
        c2=P.col(p.upper_color2),
        lower=P.col(p.lower_color),
        shoe=P.col(p.shoe_color),
        bagc=P.col(p.bag_color),
        garment=garment,
        sleeve=sleeve,
    )


def _limbs(bd: P.Body, ph: np.ndarray) -> tuple[list, list]:
    """Leg and arm segments per gait phase ``ph`` (NPH, 1, 1): ([far, near] legs, arms)."""
    p, b, sh_v, hip_v = bd.p, bd.b, bd.sh_v, bd.hip_v
    s0 = np.sin(ph)
    legs, arms = [], []
    if bd.side:
        hip_u = np.float32(0.0)
        th = p.stride * s0  # near leg angle
        for sgn in (-1.0, 1.0):
            a = sgn * th
            legs.append((hip_u, hip_v, hip_u + bd.leg_len * np.sin(a), hip_v + bd.leg_len * np.cos(a)))
        psi = -p.arm_swing * s0
        for sgn in (-1.0, 1.0):
            a = sgn * psi
            arms.append((0.0, sh_v + 0.025, bd.arm_len * np.sin(a), sh_v + 0.025 + bd.arm_len * np.cos(a)))
    else:
        sw_, arm_r = bd.shoulder_w, bd.arm_r
        for i, sgn in enumerate((-1.0, 1.0)):
            lift = 1.0 - 0.05 * np.maximum(0.0, np.sin(ph + i * np.pi))
            legs.append((sgn * 0.042 * b, hip_v, sgn * 0.05 * b, hip_v + bd.leg_len * lift))
            alift = 1.0 - 0.08 * np.maximum(0.0, np.sin(ph + i * np.pi + np.pi))
            arms.append(
                (sgn * (sw_ - 0.5 * arm_r), sh_v + 0.025, sgn * (sw_ + 0.014), sh_v + 0.025 + bd.arm_len * alift)
            )
    return legs, arms


def _paint_profile(cv: P.Canvas, bd: P.Body, legs: list, arms: list) -> None:
    """Depth order of a right-facing person: far limbs, torso and bags, head, near arm."""
    p = bd.p
    near_bag = p.bag_side == -1
    P.draw_arm(cv, bd, arms[0], P.FAR)
    if p.bag == "handbag" and not near_bag:
        P.draw_handbag(cv, bd, arms[0], P.FAR)
    P.draw_leg(cv, bd, legs[0], P.FAR)
    P.draw_bag_behind(cv, bd)
    P.draw_leg(cv, bd, legs[1])
    P.draw_torso(cv, bd)
    P.draw_bag_front(cv, bd)
    P.draw_long_hair(cv, bd)
    P.draw_head(cv, bd)
    P.draw_arm(cv, bd, arms[1])
    if p.bag == "handbag" and near_bag:
        P.draw_handbag(cv, bd, arms[1])


def _paint_frontal(cv: P.Canvas, bd: P.Body, legs: list, arms: list) -> None:
    """Depth order of a person seen from the front or the back."""
    p = bd.p
    for leg in legs:
        P.draw_leg(cv, bd, leg)
    P.draw_torso(cv, bd)
    P.draw_bag_front(cv, bd)
    if bd.back:
        P.draw_long_hair(cv, bd)
    for arm in arms:
        P.draw_arm(cv, bd, arm)
    if p.bag == "handbag":
        k = (0 if -p.bag_side < 0 else 1) if bd.front else (0 if p.bag_side < 0 else 1)
        P.draw_handbag(cv, bd, arms[k])
    P.draw_head(cv, bd)
    if bd.front:
        P.draw_long_hair(cv, bd)


def _shade_and_reduce(cv: P.Canvas, bd: P.Body, sh0: int, sw0: int) -> np.ndarray:
    """Cylindrical fall-off across the body, light from above; box-filter by ``ATLAS_SS``;
    premultiply and add the transparent border: (NPH, SH + 2, SW + 2, 4)."""
    u, v = bd.u, bd.v
    uc = 0.0
    wid = 0.13 if bd.side else 0.19 * bd.b
    shade = (1.0 - 0.32 * np.clip(((u - uc) / wid) ** 2, 0, 1)) * (1.06 - 0.12 * v)
    a = cv.a.astype(np.float32)
    rgba = np.concatenate([np.clip(cv.rgb * shade[..., None], 0, 1) * a[..., None], a[..., None]], -1)
    k = ATLAS_SS
    rgba = rgba.reshape(NPH, sh0, k, sw0, k, 4).mean((2, 4))
    out = np.zeros((NPH, sh0 + 2, sw0 + 2, 4), np.float32)
    out[:, 1:-1, 1:-1] = rgba
    return out


def render_atlas(p: Person, view: str, frame_height: int) -> np.ndarray:
    """Draw ``p`` from ``view`` at ``NPH`` gait phases.

    The atlas is drawn at ``ATLAS_SS`` x its size and box-filtered, so edges
    and stripes are anti-aliased.

    Returns:
        float32 array (NPH, SH + 2, SW + 2, 4): premultiplied RGB and alpha in
        [0, 1], with a one-pixel transparent border (for bilinear sampling).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if view == "left":  # mirror of a right-facing person whose other side is near
        q = dataclasses.replace(p, bag_side=-p.bag_side)
        return np.ascontiguousarray(render_atlas(q, "right", frame_height)[:, :, ::-1])
    sh0, sw0 = sprite_shape(frame_height)
    sh, sw = sh0 * ATLAS_SS, sw0 * ATLAS_SS
    v = (V0 + (np.arange(sh, dtype=np.float32) + 0.5) / sh * (V1 - V0))[None, :, None]
    u = (-U_HALF + (np.arange(sw, dtype=np.float32) + 0.5) / sw * 2 * U_HALF)[None, None, :]
    ph = (2 * np.pi * np.arange(NPH, dtype=np.float32) / NPH)[:, None, None]
    cv = P.Canvas(NPH, sh, sw)
    bd = _measure(p, view, u, v, (sh, sw))
    legs, arms = _limbs(bd, ph)
    if bd.side:
        _paint_profile(cv, bd, legs, arms)
    else:
        _paint_frontal(cv, bd, legs, arms)
    return _shade_and_reduce(cv, bd, sh0, sw0)


class AtlasCache:
    """LRU cache of rendered atlases keyed by (person key, view)."""

    def __init__(self, frame_height: int, capacity: int = 96):
        self.frame_height, self.capacity = frame_height, capacity
        self._d: OrderedDict = OrderedDict()

    def get(self, key, person: Person, view: str) -> np.ndarray:
        k = (key, view)
        if k in self._d:
            self._d.move_to_end(k)
            return self._d[k]
        atlas = render_atlas(person, view, self.frame_height)
        self._d[k] = atlas
        if len(self._d) > self.capacity:
            self._d.popitem(last=False)
        return atlas
