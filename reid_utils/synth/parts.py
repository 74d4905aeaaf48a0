"""Painters for the parts of a pedestrian sprite: legs, arms, torso, head, hair, bags.

Each painter draws one body part or garment feature of a :class:`Body` onto a
:class:`Canvas` (painter's algorithm, back to front), for all gait phases at once.
:func:`reid_utils.synth.atlas.render_atlas` measures the body and calls them in
depth order.

Geometry convention: body units with the top of the head at ``v = 0`` and the
soles at ``v = 1``; ``u`` is horizontal, 0 on the body axis. Design choice: what
is visible depends on the view (a backpack is a big patch from the back and two
straps from the front; a logo or an open jacket only from the front; long hair
covers the back).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_utils.synth.people import Person

FAR = 0.7  # shading of far-side limbs in profile


class Canvas:
    """Painter's-algorithm canvas over (P, SH, SW) pixels."""

    def __init__(self, p, h, w):
        self.rgb = np.zeros((p, h, w, 3), np.float32)
        self.a = np.zeros((p, h, w), bool)

    def paint(self, mask, color, shade: float = 1.0):
        mask = np.broadcast_to(mask, self.a.shape)
        color = np.asarray(color, np.float32)
        if color.ndim == 1:
            self.rgb[mask] = color * shade
        else:
            self.rgb[mask] = np.broadcast_to(color, self.rgb.shape)[mask] * shade
        self.a |= mask


def capsule(u, v, au, av, bu, bv, r):
    """Mask of points within ``r`` of segment a-b, and the segment parameter t."""
    du, dv = bu - au, bv - av
    l2 = du * du + dv * dv + 1e-9
    t = np.clip(((u - au) * du + (v - av) * dv) / l2, 0.0, 1.0)
    pu, pv = au + t * du - u, av + t * dv - v
    return pu * pu + pv * pv <= r * r, t


def ellipse(u, v, cu, cv, ru, rv):
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def rect(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def col(c) -> np.ndarray:
    """RGB 0-255 -> float32 in [0, 1]."""
    return np.asarray(c, np.float32) / 255.0


@dataclass
class Body:
    """A person's measurements (body units), colours and pixel grid for one view.

    ``u`` is (1, 1, SW) and ``v`` (1, SH, 1) float32; colours are float32 (3,);
    ``garment`` and ``sleeve`` are the upper-garment colour fields (1, SH, SW, 3).
    """

    p: Person
    u: np.ndarray
    v: np.ndarray
    side: bool  # profile view (drawn facing right)
    back: bool
    front: bool
    b: float  # build (width multiplier)
    hr: float  # head radius
    uh: float  # head centre u
    vh: float  # head centre v
    sh_v: float  # shoulder line
    hip_v: float  # hip line
    shoulder_w: float  # shoulder half width
    hip_w: float  # hip half width
    depth: float  # torso half depth (profile)
    arm_r: float
    leg_r: float
    arm_len: float
    leg_len: float
    skin: np.ndarray
    hairc: np.ndarray
    c1: np.ndarray  # upper garment colour
    c2: np.ndarray  # second upper colour (pattern, logo, sleeves)
    lower: np.ndarray
    shoe: np.ndarray
    bagc: np.ndarray
    garment: np.ndarray
    sleeve: np.ndarray


def draw_leg(cv: Canvas, bd: Body, leg: tuple, shade: float = 1.0) -> None:
    """One leg (trousers, or skin below shorts / a skirt) and its shoe.

    Args:
        leg: (hip u, hip v, ankle u, ankle v); each a float or an (NPH, 1, 1) array.
    """
    p, u, v = bd.p, bd.u, bd.v
    au, av, bu, bv = leg
    r = bd.leg_r * (1.08 if p.lower_type == "trousers" else 0.85)
    m, t = capsule(u, v, au, av, bu, bv, r)
    if p.lower_type == "trousers":
        cv.paint(m, bd.lower, shade)
    else:
        cut = 0.42 if p.lower_type == "shorts" else 1.1
        cv.paint(m & (t >= cut), bd.skin, shade)
        cv.paint(m & (t < cut), bd.lower, shade)
    fu = bu + (0.018 if bd.side else 0.0)
    cv.paint(ellipse(u, v, fu, bv + 0.006, 0.045 if bd.side else 0.03, 0.022), bd.shoe, shade)


def draw_arm(cv: Canvas, bd: Body, arm: tuple, shade: float = 1.0) -> None:
    """One arm: sleeve, bare forearm and hand; ``arm`` = (shoulder u, v, hand u, v)."""
    u, v = bd.u, bd.v
    au, av, bu, bv = arm
    m, t = capsule(u, v, au, av, bu, bv, bd.arm_r)
    cut = 0.9 if bd.p.sleeves == "long" else 0.35
    cv.paint(m & (t >= cut), bd.skin, shade)
    cv.paint(m & (t < cut), bd.sleeve, shade)
    cv.paint(ellipse(u, v, bu, bv, bd.arm_r * 1.15, bd.arm_r * 1.15), bd.skin, shade)


def draw_handbag(cv: Canvas, bd: Body, arm: tuple, shade: float = 1.0) -> None:
    """A handbag hanging from the hand of ``arm``."""
    _, _, bu, bv = arm
    cv.paint(rect(bd.u, bd.v, bu - 0.035, bu + 0.035, bv + 0.01, bv + 0.075), bd.bagc, shade)


def draw_torso(cv: Canvas, bd: Body) -> None:
    """Waist of the lower garment (or a skirt), the upper garment, logo / open jacket."""
    p, u, v = bd.p, bd.u, bd.v
    side, sh_v, hip_v, depth, hw = bd.side, bd.sh_v, bd.hip_v, bd.depth, bd.hip_w
    t = np.clip((v - sh_v) / (hip_v - sh_v), 0, 1)
    w = (depth * (1 + 0.15 * t)) if side else (bd.shoulder_w + (hw - bd.shoulder_w) * t)
    rs = 0.03
    w = w - np.where(v < sh_v + rs, rs - np.sqrt(np.maximum(0, rs * rs - (sh_v + rs - v) ** 2)), 0)
    m = (v >= sh_v) & (v <= hip_v + 0.035) & (np.abs(u - (0.005 if side else 0.0)) <= w)
    # lower-garment waist under the hem
    pelvis = rect(u, v, -(depth * 1.15 if side else hw), depth * 1.15 if side else hw, hip_v - 0.02, hip_v + 0.07)
    if p.lower_type == "skirt":
        tt = np.clip((v - hip_v) / (0.45 * bd.leg_len), 0, 1)
        ww = (depth * 1.2 if side else hw) * (1 + 0.55 * tt)
        pelvis = pelvis | ((v >= hip_v - 0.02) & (v <= hip_v + 0.45 * bd.leg_len) & (np.abs(u) <= ww))
    cv.paint(pelvis, bd.lower)
    cv.paint(m, bd.garment)
    if bd.front and p.upper_pattern == "logo":
        cv.paint(rect(u, v, -0.042, 0.042, sh_v + 0.06, sh_v + 0.15), bd.c2)
    if bd.front and p.upper_pattern == "open":
        cv.paint(m & (np.abs(u) < 0.035 * bd.b) & (v > sh_v + 0.015), bd.c2)
    if side and p.upper_pattern == "open":
        cv.paint(m & (u > 0.005 + depth * 0.55), bd.c2)


def _draw_hat(cv: Canvas, bd: Body, hm: np.ndarray) -> None:
    """Hair under a hat, the hat and its brim (``hm``: the head mask)."""
    u, v, uh, vh, hr = bd.u, bd.v, bd.uh, bd.vh, bd.hr
    side, front = bd.side, bd.front
    hat = col(bd.p.hat_color)
    cv.paint(
        hm
        & (v < vh + (0.55 * hr if bd.back else 0.0))
        & (v >= vh - 0.2 * hr)
        & ((u < uh - 0.1 * hr) if side else (np.abs(u - uh) > (0.6 * hr if front else -1))),
        bd.hairc,
    )
    cv.paint(hm & (v < vh - 0.25 * hr), hat)
    if side:
        cv.paint(rect(u, v, uh, uh + 1.5 * hr, vh - 0.32 * hr, vh - 0.15 * hr), hat)
    elif front:
        cv.paint(rect(u, v, uh - 1.0 * hr, uh + 1.0 * hr, vh - 0.32 * hr, vh - 0.17 * hr), hat)


def draw_head(cv: Canvas, bd: Body) -> None:
    """Neck, face and the hair style (short, bald, hat; long hair is :func:`draw_long_hair`)."""
    u, v, uh, vh, hr = bd.u, bd.v, bd.uh, bd.vh, bd.hr
    side, back = bd.side, bd.back
    cv.paint(rect(u, v, uh * 0.5 - 0.022, uh * 0.5 + 0.022, vh + 0.6 * hr, bd.sh_v + 0.01), bd.skin)
    ru = hr * (0.85 if side else 0.78)
    hm = ellipse(u, v, uh, vh, ru, hr)
    cv.paint(hm, bd.skin)
    st = bd.p.hair_style
    if st == "hat":
        _draw_hat(cv, bd, hm)
        return
    if st == "bald":
        cv.paint(hm & (v < vh - 0.85 * hr), bd.hairc)
        if back:
            cv.paint(hm & (v < vh + 0.3 * hr) & (v > vh - 0.1 * hr), bd.hairc)
        return
    if back:
        cv.paint(hm & (v < vh + 0.65 * hr), bd.hairc)
    elif side:
        cv.paint(hm & ((v < vh - 0.4 * hr) | ((u < uh - 0.15 * hr) & (v < vh + 0.55 * hr))), bd.hairc)
    else:
        cv.paint(hm & ((v < vh - 0.42 * hr) | ((np.abs(u - uh) > 0.62 * hr) & (v < vh + 0.1 * hr))), bd.hairc)


def draw_long_hair(cv: Canvas, bd: Body) -> None:
    """Long hair below the head: over the back, or two strands seen from the front."""
    if bd.p.hair_style != "long":
        return
    u, v, uh, vh, hr, sh_v = bd.u, bd.v, bd.uh, bd.vh, bd.hr, bd.sh_v
    if bd.back:
        cv.paint(rect(u, v, uh - 0.95 * hr, uh + 0.95 * hr, vh, sh_v + 0.11), bd.hairc)
    elif bd.side:
        cv.paint(rect(u, v, uh - 0.95 * hr, uh + 0.05 * hr, vh, sh_v + 0.09), bd.hairc)
    else:
        m = (np.abs(np.abs(u - uh) - 0.85 * hr) < 0.22 * hr) & (v > vh - 0.3 * hr) & (v < sh_v + 0.07)
        cv.paint(m, bd.hairc)


def draw_bag_behind(cv: Canvas, bd: Body) -> None:
    """Profile only: a backpack, or a shoulder bag on the far side, behind the torso."""
    p, u, v, depth = bd.p, bd.u, bd.v, bd.depth
    if p.bag == "backpack" and bd.side:
        cv.paint(rect(u, v, -depth - 0.075, -depth + 0.02, bd.sh_v + 0.015, bd.sh_v + 0.235), bd.bagc)
    if p.bag == "shoulder" and bd.side and p.bag_side == 1:  # far side in a right view
        cv.paint(rect(u, v, -depth - 0.025, -depth + 0.02, bd.hip_v - 0.08, bd.hip_v + 0.04), bd.bagc, FAR)


def _draw_backpack_front(cv: Canvas, bd: Body) -> None:
    """A backpack over the torso: the pack from the back, straps from the front or side."""
    u, v, b, sh_v = bd.u, bd.v, bd.b, bd.sh_v
    if bd.back:
        cv.paint(rect(u, v, -0.085 * b, 0.085 * b, sh_v + 0.015, sh_v + 0.235), bd.bagc)
        cv.paint(rect(u, v, -0.05 * b, 0.05 * b, sh_v + 0.15, sh_v + 0.215), bd.bagc, 0.75)
    elif bd.front:
        cv.paint((np.abs(np.abs(u) - 0.055 * b) < 0.012) & (v > sh_v) & (v < sh_v + 0.17), bd.bagc, 0.85)
    else:
        cv.paint(rect(u, v, -0.006, 0.018, sh_v, sh_v + 0.15), bd.bagc, 0.85)


def _draw_shoulder_bag_front(cv: Canvas, bd: Body) -> None:
    """A shoulder bag over the torso: near side in profile, strap and bag otherwise."""
    p, u, v, sh_v, hip_v = bd.p, bd.u, bd.v, bd.sh_v, bd.hip_v
    if bd.side:
        if p.bag_side == -1:  # near side
            cv.paint(rect(u, v, -0.05, 0.045, hip_v - 0.08, hip_v + 0.04), bd.bagc)
            cv.paint(rect(u, v, -0.008, 0.008, sh_v, hip_v - 0.08), bd.bagc, 0.8)
    else:
        us = (-p.bag_side if bd.front else p.bag_side) * (bd.hip_w + 0.03)
        m, _ = capsule(u, v, -0.7 * us, sh_v + 0.01, us, hip_v - 0.08, 0.009)
        cv.paint(m, bd.bagc, 0.8)
        cv.paint(rect(u, v, us - 0.04, us + 0.04, hip_v - 0.08, hip_v + 0.04), bd.bagc)


def draw_bag_front(cv: Canvas, bd: Body) -> None:
    """The part of a backpack or shoulder bag drawn in front of the torso."""
    if bd.p.bag == "backpack":
        _draw_backpack_front(cv, bd)
    elif bd.p.bag == "shoulder":
        _draw_shoulder_bag_front(cv, bd)
