"""Procedural rendering for the synthetic video re-ID benchmark (``reid_utils.synth``).

The paper (Sec. 1, Fig. 1 and Sec. 4.4) motivates learned clip-similarity
aggregation by the *unequal quality of clips* in real tracklets: occlusion,
frames without the person, tracker identity switches, badly cropped boxes,
motion blur, low resolution. This module draws pedestrians, scenes and those
nuisances with vectorised numpy so that they are visible and annotated:

* **Pedestrians** (:class:`Person`): body proportions (height, build, legs, head
  size), skin, hair style/colour, upper garment colour *and* pattern (plain,
  horizontal/vertical stripes, checks, chest logo, open jacket, two-tone
  sleeves), sleeves, lower garment type (trousers/shorts/skirt), shoes, bags
  (backpack, shoulder bag, handbag) and gait (speed, stride, arm swing).
  :func:`derive_lookalike` copies a person and changes exactly one detail.
* **Viewpoint**: a person is rendered ``front``, ``back``, ``left`` or
  ``right``; what is visible depends on it (a backpack is a big patch from the
  back and two straps from the front; a logo or an open jacket only from the
  front; long hair covers the back).
* **Walking**: each (person, view) is drawn once as an atlas of ``NPH`` gait
  phases (legs and arms swing with the phase), then warped into every frame
  by a per-frame similarity transform (detector jitter and scale drift) with a
  single nearest-neighbour gather on a 2x supersampled grid, box-filtered down.
* **Cameras** (:class:`Camera`): their own textured background scene (facades,
  bricks, shop fronts, foliage, fences, glass; tiles, asphalt, grass, paving),
  colour cast, saturation, brightness, contrast, gamma, defocus blur, sensor
  noise, native resolution (rendered small and upscaled) and viewpoint
  distribution.

Geometry convention: a person lives in body units with the top of the head at
``v = 0`` and the soles at ``v = 1``; ``u`` is horizontal, 0 on the body axis.
Frames use units of the frame height (``y`` in [0, 1] down, ``x`` in
[0, W/H] right). A person of height ``s`` with feet at ``(xc, yf)`` maps
``v = (y - yf + s) / s`` and ``u = (x - xc) / s``.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

NPH = 8  # gait phases per atlas
V0, V1 = -0.04, 1.04  # sprite vertical extent (body units)
U_HALF = 0.42  # sprite half width (body units)
VIEWS = ("front", "back", "left", "right")
ATLAS_SS = 2  # atlases are drawn at 2x and box-filtered (anti-aliasing)
NOMINAL_SCALE = 0.87  # body height / frame height the atlas resolution is tuned for

# --------------------------------------------------------------------------
# palettes (RGB 0-255). Dark garments are more frequent, as on real streets,
# which is one reason colour alone does not identify people.
UPPER_COLORS = {
    "black": (28, 28, 32),
    "charcoal": (62, 62, 68),
    "grey": (128, 128, 132),
    "white": (222, 222, 216),
    "navy": (32, 42, 88),
    "blue": (42, 82, 168),
    "lightblue": (125, 170, 215),
    "red": (178, 34, 38),
    "maroon": (108, 28, 42),
    "green": (42, 118, 62),
    "olive": (98, 102, 52),
    "beige": (198, 178, 140),
    "brown": (108, 74, 46),
    "yellow": (218, 188, 52),
    "pink": (218, 142, 168),
    "purple": (98, 52, 128),
    "orange": (226, 120, 42),
    "teal": (32, 118, 118),
}
UPPER_WEIGHTS = {
    "black": 3.0,
    "charcoal": 2.0,
    "grey": 2.0,
    "white": 2.0,
    "navy": 2.0,
    "blue": 1.5,
    "lightblue": 1.0,
    "red": 1.2,
    "maroon": 0.8,
    "green": 0.8,
    "olive": 0.6,
    "beige": 1.0,
    "brown": 0.8,
    "yellow": 0.5,
    "pink": 0.5,
    "purple": 0.4,
    "orange": 0.4,
    "teal": 0.4,
}
LOWER_COLORS = {
    "black": (26, 26, 30),
    "charcoal": (58, 58, 64),
    "grey": (118, 118, 122),
    "jeans": (52, 72, 118),
    "darkjeans": (34, 44, 78),
    "khaki": (168, 150, 108),
    "brown": (96, 68, 44),
    "navy": (30, 38, 80),
    "white": (214, 214, 208),
    "beige": (190, 172, 138),
    "red": (150, 36, 40),
}
LOWER_WEIGHTS = {
    "black": 3.0,
    "charcoal": 1.5,
    "grey": 1.5,
    "jeans": 3.0,
    "darkjeans": 2.0,
    "khaki": 1.2,
    "brown": 0.8,
    "navy": 1.2,
    "white": 0.4,
    "beige": 0.8,
    "red": 0.3,
}
SKIN = [(238, 200, 172), (224, 182, 150), (200, 152, 116), (166, 116, 82), (122, 82, 56), (92, 62, 42)]
HAIR = {
    "black": (22, 20, 20),
    "darkbrown": (56, 36, 26),
    "brown": (100, 66, 40),
    "blond": (198, 168, 100),
    "grey": (150, 150, 150),
    "auburn": (128, 58, 32),
}
HAIR_WEIGHTS = {"black": 3.0, "darkbrown": 2.5, "brown": 1.5, "blond": 1.0, "grey": 0.6, "auburn": 0.4}
SHOES = {
    "black": (24, 24, 24),
    "white": (225, 225, 225),
    "brown": (90, 60, 36),
    "grey": (120, 120, 120),
    "red": (170, 40, 40),
}
SHOE_WEIGHTS = {"black": 3.0, "white": 2.0, "brown": 1.0, "grey": 1.0, "red": 0.3}
BAG_COLORS = {
    "black": (30, 30, 34),
    "grey": (110, 110, 114),
    "navy": (34, 44, 90),
    "brown": (110, 72, 42),
    "red": (170, 38, 40),
    "green": (50, 100, 60),
    "beige": (190, 170, 130),
}
UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "checks", "logo", "open", "twotone")
PATTERN_WEIGHTS = (4.0, 1.2, 0.8, 0.8, 1.0, 1.0, 0.8)
HAIR_STYLES = ("short", "long", "bald", "hat")
HAIR_STYLE_WEIGHTS = (5.0, 2.5, 0.6, 1.0)
LOWER_TYPES = ("trousers", "shorts", "skirt")
LOWER_TYPE_WEIGHTS = (6.0, 1.5, 1.0)
BAGS = ("none", "backpack", "shoulder", "handbag")
BAG_WEIGHTS = (4.0, 2.0, 1.5, 1.0)


def _pick(rng: np.random.Generator, names, weights=None):
    names = list(names)
    w = (
        np.ones(len(names))
        if weights is None
        else np.asarray([weights[n] for n in names] if isinstance(weights, dict) else weights, float)
    )
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _jitter_color(rng, rgb, amount=0.08):
    """Per-identity shade variation of a palette colour (multiplicative)."""
    c = (
        np.asarray(rgb, float)
        * rng.uniform(1 - amount, 1 + amount)
        * rng.uniform(1 - amount / 2, 1 + amount / 2, size=3)
    )
    return [int(x) for x in np.clip(np.round(c), 0, 255)]


@dataclass
class Person:
    """Appearance and gait of one procedurally drawn pedestrian.

    Colours are RGB lists in 0-255; lengths are in body units (height = 1).
    """

    height: float  # fraction of the frame height at nominal box scale
    build: float  # width multiplier
    hips: float  # hip width relative to shoulders
    leg_frac: float  # leg length / body height
    head_r: float  # vertical head radius
    skin: list
    hair_style: str
    hair_color: list
    hat_color: list
    upper_pattern: str
    upper_color: list
    upper_color2: list
    stripe_period: float
    sleeves: str  # long | short
    lower_type: str
    lower_color: list
    shoe_color: list
    bag: str
    bag_color: list
    bag_side: int  # +1 right side of the body, -1 left
    gait_speed: float  # gait phase advance per frame (rad)
    stride: float  # leg swing amplitude (rad)
    arm_swing: float  # arm swing amplitude (rad)
    names: dict = field(default_factory=dict)  # palette names, for humans

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def sample_person(rng: np.random.Generator) -> Person:
    """Draw a random pedestrian."""
    up = _pick(rng, UPPER_COLORS, UPPER_WEIGHTS)
    pattern = _pick(rng, UPPER_PATTERNS, PATTERN_WEIGHTS)
    up2 = _pick(rng, [c for c in UPPER_COLORS if c != up], UPPER_WEIGHTS)
    lo = _pick(rng, LOWER_COLORS, LOWER_WEIGHTS)
    hair = _pick(rng, HAIR, HAIR_WEIGHTS)
    shoe = _pick(rng, SHOES, SHOE_WEIGHTS)
    bagc = _pick(rng, BAG_COLORS)
    hatc = _pick(rng, UPPER_COLORS, UPPER_WEIGHTS)
    return Person(
        height=float(rng.uniform(0.80, 0.93)),
        build=float(rng.uniform(0.82, 1.22)),
        hips=float(rng.uniform(0.8, 1.05)),
        leg_frac=float(rng.uniform(0.45, 0.53)),
        head_r=float(rng.uniform(0.058, 0.072)),
        skin=_jitter_color(rng, SKIN[int(rng.integers(len(SKIN)))], 0.05),
        hair_style=_pick(rng, HAIR_STYLES, HAIR_STYLE_WEIGHTS),
        hair_color=_jitter_color(rng, HAIR[hair], 0.06),
        hat_color=_jitter_color(rng, UPPER_COLORS[hatc]),
        upper_pattern=pattern,
        upper_color=_jitter_color(rng, UPPER_COLORS[up]),
        upper_color2=_jitter_color(rng, UPPER_COLORS[up2]),
        stripe_period=float(rng.uniform(0.085, 0.125)),
        sleeves="long" if rng.random() < 0.6 else "short",
        lower_type=_pick(rng, LOWER_TYPES, LOWER_TYPE_WEIGHTS),
        lower_color=_jitter_color(rng, LOWER_COLORS[lo]),
        shoe_color=_jitter_color(rng, SHOES[shoe], 0.05),
        bag=_pick(rng, BAGS, BAG_WEIGHTS),
        bag_color=_jitter_color(rng, BAG_COLORS[bagc]),
        bag_side=int(rng.choice([-1, 1])),
        gait_speed=float(rng.uniform(0.35, 0.85)),
        stride=float(rng.uniform(0.22, 0.42)),
        arm_swing=float(rng.uniform(0.15, 0.45)),
        names={"upper": up, "upper2": up2, "lower": lo, "hair": hair, "shoes": shoe, "bag": bagc, "hat": hatc},
    )


LOOKALIKE_DETAILS = (
    "upper_pattern",
    "bag",
    "hair_style",
    "lower_type",
    "sleeves",
    "build",
    "shoe_color",
    "gait",
    "height",
)


def derive_lookalike(p: Person, rng: np.random.Generator) -> tuple[Person, str]:
    """A copy of ``p`` that differs in exactly one detail; returns (twin, detail).

    Colours are kept, so a colour histogram can hardly separate the pair; the
    difference is a pattern, an accessory, a shape or the gait.
    """
    detail = LOOKALIKE_DETAILS[int(rng.integers(len(LOOKALIKE_DETAILS)))]
    q = dataclasses.replace(p, names=dict(p.names))
    if detail == "upper_pattern":
        q.upper_pattern = _pick(rng, [x for x in UPPER_PATTERNS if x != p.upper_pattern])
    elif detail == "bag":
        q.bag = _pick(rng, [x for x in BAGS if x != p.bag])
    elif detail == "hair_style":
        q.hair_style = _pick(rng, [x for x in HAIR_STYLES if x != p.hair_style])
    elif detail == "lower_type":
        q.lower_type = _pick(rng, [x for x in LOWER_TYPES if x != p.lower_type])
    elif detail == "sleeves":
        q.sleeves = "short" if p.sleeves == "long" else "long"
    elif detail == "build":
        q.build = float(np.clip(p.build + rng.choice([-1, 1]) * rng.uniform(0.25, 0.35), 0.8, 1.3))
        if abs(q.build - p.build) < 0.2:
            q.build = float(p.build - 0.3 if p.build > 1.05 else p.build + 0.3)
    elif detail == "shoe_color":
        name = _pick(rng, [x for x in SHOES if x != p.names.get("shoes")])
        q.shoe_color, q.names["shoes"] = list(SHOES[name]), name
    elif detail == "gait":
        q.gait_speed = float(p.gait_speed + 0.35 if p.gait_speed < 0.6 else p.gait_speed - 0.35)
        q.stride = float(np.clip(p.stride + rng.uniform(-0.1, 0.1), 0.2, 0.45))
    elif detail == "height":
        q.height = float(p.height + 0.08 if p.height < 0.865 else p.height - 0.08)
        q.leg_frac = float(np.clip(p.leg_frac + rng.uniform(-0.03, 0.03), 0.44, 0.54))
    return q, detail


# --------------------------------------------------------------------------
# sprite atlas: one (person, view) drawn at NPH gait phases


def sprite_shape(frame_height: int) -> tuple[int, int]:
    """Atlas size (SH, SW) so that one atlas pixel ~ one output pixel at nominal scale."""
    sh = max(32, int(round(NOMINAL_SCALE * frame_height * (V1 - V0))))
    sw = int(round(sh * 2 * U_HALF / (V1 - V0)))
    return sh, sw


class _Canvas:
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


def _capsule(u, v, au, av, bu, bv, r):
    """Mask of points within ``r`` of segment a-b, and the segment parameter t."""
    du, dv = bu - au, bv - av
    l2 = du * du + dv * dv + 1e-9
    t = np.clip(((u - au) * du + (v - av) * dv) / l2, 0.0, 1.0)
    pu, pv = au + t * du - u, av + t * dv - v
    return pu * pu + pv * pv <= r * r, t


def _ellipse(u, v, cu, cv, ru, rv):
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _rect(u, v, u0, u1, v0, v1):
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def _col(c) -> np.ndarray:
    return np.asarray(c, np.float32) / 255.0


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
    cv = _Canvas(NPH, sh, sw)
    side, back, front = view == "right", view == "back", view == "front"

    b = p.build
    hr = p.head_r
    vh = hr + 0.004
    sh_v = 2 * hr + 0.035
    hip_v = 1.0 - p.leg_frac
    sw_ = 0.118 * b
    hw = 0.105 * b * p.hips
    depth = 0.075 * b
    arm_r, leg_r = 0.029 * b, 0.04 * b
    arm_len = hip_v + 0.07 - sh_v
    leg_len = 0.972 - hip_v
    skin, hairc = _col(p.skin), _col(p.hair_color)
    c1, c2 = _col(p.upper_color), _col(p.upper_color2)
    lower, shoe, bagc = _col(p.lower_color), _col(p.shoe_color), _col(p.bag_color)
    far = 0.7  # shading of far-side limbs in profile

    # ---- upper-garment colour field (pattern in body coordinates) ----
    per = p.stripe_period
    if p.upper_pattern == "hstripes":
        pm = ((v - sh_v) / per) % 1.0 < 0.5
    elif p.upper_pattern == "vstripes":
        pm = ((u / per + 0.25) % 1.0 < 0.5) & (v > -1)
    elif p.upper_pattern == "checks":
        pm = (((v - sh_v) / per) % 1.0 < 0.5) ^ ((u / per + 0.25) % 1.0 < 0.5)
    else:
        pm = np.zeros((1, sh, sw), bool)
    garment = np.where(pm[..., None], c2, c1)  # (1, SH, SW, 3)
    sleeve = np.broadcast_to(c2, garment.shape) if p.upper_pattern == "twotone" else garment

    # ---- limb geometry per phase ----
    s0 = np.sin(ph)
    if side:
        uh = 0.012
        hip_u = np.float32(0.0)
        th = p.stride * s0  # near leg angle
        legs = []  # (far, near)
        for sgn in (-1.0, 1.0):
            a = sgn * th
            legs.append((hip_u, hip_v, hip_u + leg_len * np.sin(a), hip_v + leg_len * np.cos(a)))
        psi = -p.arm_swing * s0
        arms = []
        for sgn in (-1.0, 1.0):
            a = sgn * psi
            arms.append((0.0, sh_v + 0.025, arm_len * np.sin(a), sh_v + 0.025 + arm_len * np.cos(a)))
    else:
        uh = 0.0
        legs, arms = [], []
        for i, sgn in enumerate((-1.0, 1.0)):
            lift = 1.0 - 0.05 * np.maximum(0.0, np.sin(ph + i * np.pi))
            legs.append((sgn * 0.042 * b, hip_v, sgn * 0.05 * b, hip_v + leg_len * lift))
            alift = 1.0 - 0.08 * np.maximum(0.0, np.sin(ph + i * np.pi + np.pi))
            arms.append((sgn * (sw_ - 0.5 * arm_r), sh_v + 0.025, sgn * (sw_ + 0.014), sh_v + 0.025 + arm_len * alift))

    def draw_leg(leg, shade=1.0):
        au, av, bu, bv = leg
        r = leg_r * (1.08 if p.lower_type == "trousers" else 0.85)
        m, t = _capsule(u, v, au, av, bu, bv, r)
        if p.lower_type == "trousers":
            cv.paint(m, lower, shade)
        else:
            cut = 0.42 if p.lower_type == "shorts" else 1.1
            cv.paint(m & (t >= cut), skin, shade)
            cv.paint(m & (t < cut), lower, shade)
        fu = bu + (0.018 if side else 0.0)
        cv.paint(_ellipse(u, v, fu, bv + 0.006, 0.045 if side else 0.03, 0.022), shoe, shade)

    def draw_arm(arm, shade=1.0):
        au, av, bu, bv = arm
        m, t = _capsule(u, v, au, av, bu, bv, arm_r)
        cut = 0.9 if p.sleeves == "long" else 0.35
        cv.paint(m & (t >= cut), skin, shade)
        cv.paint(m & (t < cut), sleeve, shade)
        cv.paint(_ellipse(u, v, bu, bv, arm_r * 1.15, arm_r * 1.15), skin, shade)

    def handbag(arm, shade=1.0):
        _, _, bu, bv = arm
        cv.paint(_rect(u, v, bu - 0.035, bu + 0.035, bv + 0.01, bv + 0.075), bagc, shade)

    def torso():
        t = np.clip((v - sh_v) / (hip_v - sh_v), 0, 1)
        w = (depth * (1 + 0.15 * t)) if side else (sw_ + (hw - sw_) * t)
        rs = 0.03
        w = w - np.where(v < sh_v + rs, rs - np.sqrt(np.maximum(0, rs * rs - (sh_v + rs - v) ** 2)), 0)
        m = (v >= sh_v) & (v <= hip_v + 0.035) & (np.abs(u - (0.005 if side else 0.0)) <= w)
        # lower-garment waist under the hem
        pelvis = _rect(u, v, -(depth * 1.15 if side else hw), depth * 1.15 if side else hw, hip_v - 0.02, hip_v + 0.07)
        if p.lower_type == "skirt":
            tt = np.clip((v - hip_v) / (0.45 * leg_len), 0, 1)
            ww = (depth * 1.2 if side else hw) * (1 + 0.55 * tt)
            pelvis = pelvis | ((v >= hip_v - 0.02) & (v <= hip_v + 0.45 * leg_len) & (np.abs(u) <= ww))
        cv.paint(pelvis, lower)
        cv.paint(m, garment)
        if front and p.upper_pattern == "logo":
            cv.paint(_rect(u, v, -0.042, 0.042, sh_v + 0.06, sh_v + 0.15), c2)
        if front and p.upper_pattern == "open":
            cv.paint(m & (np.abs(u) < 0.035 * b) & (v > sh_v + 0.015), c2)
        if side and p.upper_pattern == "open":
            cv.paint(m & (u > 0.005 + depth * 0.55), c2)

    def head():
        cv.paint(_rect(u, v, uh * 0.5 - 0.022, uh * 0.5 + 0.022, vh + 0.6 * hr, sh_v + 0.01), skin)
        ru = hr * (0.85 if side else 0.78)
        hm = _ellipse(u, v, uh, vh, ru, hr)
        cv.paint(hm, skin)
        st = p.hair_style
        if st == "hat":
            hat = _col(p.hat_color)
            cv.paint(
                hm
                & (v < vh + (0.55 * hr if back else 0.0))
                & (v >= vh - 0.2 * hr)
                & ((u < uh - 0.1 * hr) if side else (np.abs(u - uh) > (0.6 * hr if front else -1))),
                hairc,
            )
            cv.paint(hm & (v < vh - 0.25 * hr), hat)
            if side:
                cv.paint(_rect(u, v, uh, uh + 1.5 * hr, vh - 0.32 * hr, vh - 0.15 * hr), hat)
            elif front:
                cv.paint(_rect(u, v, uh - 1.0 * hr, uh + 1.0 * hr, vh - 0.32 * hr, vh - 0.17 * hr), hat)
            return
        if st == "bald":
            cv.paint(hm & (v < vh - 0.85 * hr), hairc)
            if back:
                cv.paint(hm & (v < vh + 0.3 * hr) & (v > vh - 0.1 * hr), hairc)
            return
        if back:
            cv.paint(hm & (v < vh + 0.65 * hr), hairc)
        elif side:
            cv.paint(hm & ((v < vh - 0.4 * hr) | ((u < uh - 0.15 * hr) & (v < vh + 0.55 * hr))), hairc)
        else:
            cv.paint(hm & ((v < vh - 0.42 * hr) | ((np.abs(u - uh) > 0.62 * hr) & (v < vh + 0.1 * hr))), hairc)

    def long_hair():
        if p.hair_style != "long":
            return
        if back:
            cv.paint(_rect(u, v, uh - 0.95 * hr, uh + 0.95 * hr, vh, sh_v + 0.11), hairc)
        elif side:
            cv.paint(_rect(u, v, uh - 0.95 * hr, uh + 0.05 * hr, vh, sh_v + 0.09), hairc)
        else:
            m = (np.abs(np.abs(u - uh) - 0.85 * hr) < 0.22 * hr) & (v > vh - 0.3 * hr) & (v < sh_v + 0.07)
            cv.paint(m, hairc)

    def backpack_behind():
        if p.bag == "backpack" and side:
            cv.paint(_rect(u, v, -depth - 0.075, -depth + 0.02, sh_v + 0.015, sh_v + 0.235), bagc)
        if p.bag == "shoulder" and side and p.bag_side == 1:  # far side in a right view
            cv.paint(_rect(u, v, -depth - 0.025, -depth + 0.02, hip_v - 0.08, hip_v + 0.04), bagc, far)

    def bag_front_layer():
        if p.bag == "backpack":
            if back:
                cv.paint(_rect(u, v, -0.085 * b, 0.085 * b, sh_v + 0.015, sh_v + 0.235), bagc)
                cv.paint(_rect(u, v, -0.05 * b, 0.05 * b, sh_v + 0.15, sh_v + 0.215), bagc, 0.75)
            elif front:
                cv.paint((np.abs(np.abs(u) - 0.055 * b) < 0.012) & (v > sh_v) & (v < sh_v + 0.17), bagc, 0.85)
            else:
                cv.paint(_rect(u, v, -0.006, 0.018, sh_v, sh_v + 0.15), bagc, 0.85)
        elif p.bag == "shoulder":
            if side:
                if p.bag_side == -1:  # near side
                    cv.paint(_rect(u, v, -0.05, 0.045, hip_v - 0.08, hip_v + 0.04), bagc)
                    cv.paint(_rect(u, v, -0.008, 0.008, sh_v, hip_v - 0.08), bagc, 0.8)
            else:
                us = (-p.bag_side if front else p.bag_side) * (hw + 0.03)
                m, _ = _capsule(u, v, -0.7 * us, sh_v + 0.01, us, hip_v - 0.08, 0.009)
                cv.paint(m, bagc, 0.8)
                cv.paint(_rect(u, v, us - 0.04, us + 0.04, hip_v - 0.08, hip_v + 0.04), bagc)

    # ---- paint in depth order ----
    if side:
        near_bag = p.bag_side == -1
        draw_arm(arms[0], far)
        if p.bag == "handbag" and not near_bag:
            handbag(arms[0], far)
        draw_leg(legs[0], far)
        backpack_behind()
        draw_leg(legs[1])
        torso()
        bag_front_layer()
        long_hair()
        head()
        draw_arm(arms[1])
        if p.bag == "handbag" and near_bag:
            handbag(arms[1])
    else:
        for leg in legs:
            draw_leg(leg)
        torso()
        bag_front_layer()
        if back:
            long_hair()
        for arm in arms:
            draw_arm(arm)
        if p.bag == "handbag":
            k = (0 if -p.bag_side < 0 else 1) if front else (0 if p.bag_side < 0 else 1)
            handbag(arms[k])
        head()
        if front:
            long_hair()

    # ---- shading: cylindrical fall-off across the body, light from above ----
    uc = 0.0
    wid = 0.13 if side else 0.19 * b
    shade = (1.0 - 0.32 * np.clip(((u - uc) / wid) ** 2, 0, 1)) * (1.06 - 0.12 * v)
    a = cv.a.astype(np.float32)
    rgba = np.concatenate([np.clip(cv.rgb * shade[..., None], 0, 1) * a[..., None], a[..., None]], -1)
    k = ATLAS_SS
    rgba = rgba.reshape(NPH, sh0, k, sw0, k, 4).mean((2, 4))
    out = np.zeros((NPH, sh0 + 2, sw0 + 2, 4), np.float32)
    out[:, 1:-1, 1:-1] = rgba
    return out


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


# --------------------------------------------------------------------------
# cameras and scenes


@dataclass
class Camera:
    """One camera: scene, photometry, optics, resolution and viewpoints."""

    camid: int
    archetype: str
    upper_style: str
    ground_style: str
    horizon: float  # scene y of the wall/ground boundary
    gains: list  # per-channel colour cast
    saturation: float
    brightness: float
    contrast: float
    gamma: float
    blur_sigma: float  # defocus, in output pixels
    noise_std: float  # sensor noise, in [0, 1] units
    resolution: float  # native resolution / output resolution
    jpeg_drop: int  # JPEG quality reduction for this camera
    view_probs: dict  # probability of front/back/left/right
    jitter: float  # detector jitter multiplier
    occluders: list  # kinds of static occluders in this scene
    palette: list = field(default_factory=list)  # scene colours (0-1 RGB)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return _round_floats(d)


def _round_floats(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _round_floats(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round_floats(v) for v in x]
    return x


# Six archetypes; a seed permutes them over the camera ids and jitters them.
_ARCHETYPES = [
    dict(
        archetype="sunny plaza",
        gains=(1.12, 1.0, 0.8),
        saturation=1.1,
        brightness=1.08,
        contrast=1.1,
        gamma=0.95,
        blur_sigma=0.3,
        noise_std=0.01,
        resolution=1.0,
        jpeg_drop=0,
        view_probs=dict(front=0.45, back=0.4, left=0.08, right=0.07),
        jitter=1.0,
        occluders=["pole", "bench", "person"],
    ),
    dict(
        archetype="fluorescent corridor",
        gains=(0.88, 1.06, 1.0),
        saturation=0.7,
        brightness=1.0,
        contrast=0.95,
        gamma=1.0,
        blur_sigma=0.6,
        noise_std=0.02,
        resolution=0.75,
        jpeg_drop=10,
        view_probs=dict(front=0.1, back=0.1, left=0.4, right=0.4),
        jitter=1.2,
        occluders=["person", "bin", "pole"],
    ),
    dict(
        archetype="shaded street, low-res",
        gains=(0.84, 0.95, 1.18),
        saturation=0.9,
        brightness=0.72,
        contrast=1.0,
        gamma=1.1,
        blur_sigma=0.4,
        noise_std=0.035,
        resolution=0.6,
        jpeg_drop=15,
        view_probs=dict(front=0.3, back=0.3, left=0.2, right=0.2),
        jitter=1.4,
        occluders=["car", "person", "pole"],
    ),
    dict(
        archetype="overexposed entrance",
        gains=(1.0, 1.0, 1.02),
        saturation=0.75,
        brightness=1.15,
        contrast=0.7,
        gamma=0.8,
        blur_sigma=0.8,
        noise_std=0.015,
        resolution=1.0,
        jpeg_drop=5,
        view_probs=dict(front=0.15, back=0.15, left=0.35, right=0.35),
        jitter=1.0,
        occluders=["person", "bush", "bench"],
    ),
    dict(
        archetype="evening sodium light",
        gains=(1.22, 0.92, 0.6),
        saturation=0.85,
        brightness=0.68,
        contrast=1.05,
        gamma=1.15,
        blur_sigma=0.5,
        noise_std=0.04,
        resolution=0.7,
        jpeg_drop=20,
        view_probs=dict(front=0.15, back=0.55, left=0.15, right=0.15),
        jitter=1.3,
        occluders=["car", "person", "bush"],
    ),
    dict(
        archetype="crisp shopping street",
        gains=(1.05, 0.95, 1.06),
        saturation=1.2,
        brightness=1.0,
        contrast=1.15,
        gamma=1.0,
        blur_sigma=0.2,
        noise_std=0.012,
        resolution=1.0,
        jpeg_drop=0,
        view_probs=dict(front=0.55, back=0.25, left=0.1, right=0.1),
        jitter=0.8,
        occluders=["person", "pole", "bin"],
    ),
]


def _muted_color(rng) -> list:
    """A desaturated scene colour (urban scenes are mostly greyish), RGB in [0, 1]."""
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.75))
    return [round(float(c), 3) for c in rgb]


UPPER_STYLES = ("facade", "brick", "shop", "foliage", "fence", "glass")
GROUND_STYLES = ("tiles", "asphalt", "grass", "paving", "concrete", "wood")


def make_cameras(n: int, rng: np.random.Generator, variation: float = 1.0) -> list[Camera]:
    """``n`` (<= 6) cameras from permuted, jittered archetypes.

    ``variation`` scales every departure from a neutral camera (colour cast,
    saturation, brightness, contrast, gamma); 0 gives identical photometry.
    """
    order = rng.permutation(len(_ARCHETYPES))[:n]
    ups = rng.permutation(UPPER_STYLES)
    grounds = rng.permutation(GROUND_STYLES)
    shared = [_muted_color(rng) for _ in range(3)]  # one campus: shared building colours
    cams = []
    for i, k in enumerate(order):
        a = dict(_ARCHETYPES[int(k)])

        def mix(x, neutral, a_=variation):
            return float(neutral + (x - neutral) * a_)

        gains = [mix(g * rng.uniform(0.96, 1.04), 1.0) for g in a["gains"]]
        palette = shared + [_muted_color(rng) for _ in range(3)]
        cams.append(
            Camera(
                camid=i + 1,
                archetype=a["archetype"],
                upper_style=str(ups[i]),
                ground_style=str(grounds[i]),
                horizon=float(rng.uniform(0.95, 1.12)),
                gains=gains,
                saturation=mix(a["saturation"], 1.0),
                brightness=mix(a["brightness"] * rng.uniform(0.95, 1.05), 1.0),
                contrast=mix(a["contrast"], 1.0),
                gamma=mix(a["gamma"], 1.0),
                blur_sigma=float(a["blur_sigma"] * rng.uniform(0.8, 1.2)),
                noise_std=float(a["noise_std"] * rng.uniform(0.8, 1.2)),
                resolution=float(a["resolution"]),
                jpeg_drop=int(a["jpeg_drop"]),
                view_probs=dict(a["view_probs"]),
                jitter=float(a["jitter"]),
                occluders=list(a["occluders"]),
                palette=palette,
            )
        )
    return cams


def _smooth_noise(rng, h, w, cell):
    """Bilinearly interpolated random field of size (h, w), feature size ``cell`` px."""
    gh, gw = h // cell + 2, w // cell + 2
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    yy = np.arange(h, dtype=np.float32) / cell
    xx = np.arange(w, dtype=np.float32) / cell
    y0, x0 = yy.astype(int), xx.astype(int)
    fy, fx = (yy - y0)[:, None], (xx - x0)[None, :]
    a = g[y0][:, x0]
    b_ = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b_ * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


SCENE_H, SCENE_W = 1.8, 6.0  # scene size in frame-height units


def make_background(cam: Camera, rng: np.random.Generator, ppu: int) -> np.ndarray:
    """A textured scene for ``cam``: float32 (SCENE_H*ppu, SCENE_W*ppu, 3) in [0, 1].

    ``ppu`` is pixels per frame-height unit. Upper part: a structured wall
    (windows, bricks, shop fronts, foliage, fence or glass) with street
    furniture; lower part: a textured ground plane.
    """
    bh, bw = int(SCENE_H * ppu), int(SCENE_W * ppu)
    Y = ((np.arange(bh, dtype=np.float32) + 0.5) / ppu)[:, None]
    X = ((np.arange(bw, dtype=np.float32) + 0.5) / ppu)[None, :]
    pal = [np.asarray(c, np.float32) for c in cam.palette]
    img = np.zeros((bh, bw, 3), np.float32)
    hz = cam.horizon
    upper = np.broadcast_to(Y < hz, (bh, bw))
    n1 = _smooth_noise(rng, bh, bw, max(2, ppu // 6))
    n2 = _smooth_noise(rng, bh, bw, max(2, ppu // 1))

    # ---- wall / upper scene: segments of different styles along the street ----
    def wall_style(st, pal):
        base = pal[0] * 0.8 + 0.1
        wall = np.broadcast_to(base, (bh, bw, 3)).copy()
        if st == "facade":
            sx, sy = rng.uniform(0.28, 0.4), rng.uniform(0.25, 0.32)
            cx, cy = (X / sx) % 1.0, ((Y - 0.05) / sy) % 1.0
            win = (cx > 0.2) & (cx < 0.8) & (cy > 0.2) & (cy < 0.75)
            cell = (np.floor(X / sx) * 7 + np.floor(Y / sy) * 13).astype(int) % 5
            lit = 0.15 + 0.12 * cell[..., None]
            wall = np.where(win[..., None], np.asarray([0.2, 0.25, 0.3]) + lit * pal[1], wall)
            frame_ = ((np.abs(cx - 0.2) < 0.03) | (np.abs(cx - 0.8) < 0.03)) & (cy > 0.18) & (cy < 0.77)
            wall = np.where(frame_[..., None], 0.85, wall)
        elif st == "brick":
            rh, bwid = 0.055, rng.uniform(0.12, 0.16)
            row = np.floor(Y / rh)
            cx = (X + (row % 2) * bwid / 2) / bwid
            mortar = ((Y / rh) % 1.0 < 0.14) | (cx % 1.0 < 0.06)
            bid = (np.floor(cx) * 31 + row * 17) % 7
            brick = pal[0] * 0.6 + np.asarray([0.22, 0.1, 0.06]) * (0.8 + 0.06 * bid[..., None])
            wall = np.where(mortar[..., None], np.asarray([0.7, 0.68, 0.62]), brick)
        elif st == "shop":
            edges = np.cumsum(rng.uniform(0.5, 1.2, 16))
            idx = np.searchsorted(edges, X[0] % edges[-1])
            cols = np.stack([pal[int(k) % 6] for k in rng.integers(0, 6, 17)])
            panel = cols[idx][None, :, :] * np.ones((bh, 1, 1), np.float32)
            sign = (Y > 0.25) & (Y < 0.4)
            door = ((X % 0.9) > 0.55) & ((X % 0.9) < 0.8) & (Y > 0.55)
            glass = (Y > 0.45) & ~door
            wall = np.where(
                sign[..., None],
                panel * 1.2,
                np.where(door[..., None], panel * 0.35, np.where(glass[..., None], 0.35 + 0.25 * panel, panel * 0.8)),
            )
            letters = sign & ((np.floor(X / 0.045) * 3 + np.floor(Y / 0.05)) % 4 == 0)
            wall = np.where(letters[..., None], 0.95, wall)
        elif st == "foliage":
            leaves = np.clip(0.5 + 0.35 * n1 + 0.25 * n2, 0, 1)[..., None]
            wall = np.asarray([0.16, 0.24, 0.14]) + leaves * np.asarray([0.18, 0.26, 0.14])
            trunk = ((X % 0.7) < 0.06) & (Y > 0.55)
            wall = np.where(trunk[..., None], np.asarray([0.3, 0.2, 0.12]), wall)
        elif st == "fence":
            sky = np.asarray([0.6, 0.7, 0.85]) * (1 - 0.3 * Y[..., None])
            bushes = (Y > 0.45 + 0.1 * n2)[..., None]
            wall = np.where(
                bushes, np.asarray([0.22, 0.3, 0.2]) * (1 + 0.3 * n1[..., None]), np.broadcast_to(sky, (bh, bw, 3))
            )
            bars = ((X % 0.085) < 0.018) & (Y > 0.35)
            rail = (np.abs(Y - 0.42) < 0.015) | (np.abs(Y - hz + 0.08) < 0.015)
            wall = np.where((bars | rail)[..., None], pal[2] * 0.5, wall)
        elif st == "glass":
            refl = 0.45 + 0.15 * n1[..., None] + 0.1 * (X % 0.4)[..., None]
            wall = np.asarray([0.45, 0.55, 0.65]) * refl + 0.05
            mull = ((X % 0.42) < 0.025) | ((Y % 0.5) < 0.02)
            wall = np.where(mull[..., None], np.asarray([0.25, 0.25, 0.28]), wall)

        return wall

    edges = np.cumsum(rng.uniform(0.8, 2.2, 12))
    seg = np.searchsorted(edges, X[0] % edges[-1])  # (bw,)
    styles = [cam.upper_style if rng.random() < 0.5 else str(rng.choice(UPPER_STYLES)) for _ in range(len(edges) + 1)]
    wall = np.zeros((bh, bw, 3), np.float32)
    for st in sorted(set(styles)):
        cols = np.isin(seg, [i for i, x in enumerate(styles) if x == st])
        spal = [pal[int(k)] for k in rng.permutation(6)]
        wall[:, cols] = wall_style(st, spal)[:, cols]
    wall = wall * (1.0 + 0.06 * n2[..., None])

    # ---- ground: segments of different surfaces along the street ----
    d = np.maximum(Y - hz, 1e-3)  # depth cue: spacing grows towards the camera

    def ground_style(gs, pal):
        gcol = pal[0] * 0.5 + 0.25
        if gs == "tiles":
            q = (X / (0.12 + 0.5 * d)) % 1.0
            r = (np.log1p(d * 8) / 0.35) % 1.0
            line = (q < 0.06) | (r < 0.08)
            ground = np.where(line[..., None], gcol * 0.7, gcol)
        elif gs == "asphalt":
            ground = np.asarray([0.28, 0.28, 0.3]) * (1 + 0.25 * n1[..., None])
            lane = (np.abs(Y - hz - 0.35) < 0.02) & ((X % 0.6) < 0.35)
            ground = np.where(lane[..., None], np.asarray([0.85, 0.8, 0.4]), ground)
        elif gs == "grass":
            ground = np.asarray([0.3, 0.38, 0.24]) * (1 + 0.3 * n1[..., None] + 0.15 * n2[..., None])
        elif gs == "paving":
            row = np.floor(np.log1p(d * 10) / 0.25)
            cx = (X + (row % 2) * 0.05) / 0.1
            line = (cx % 1.0 < 0.08) | ((np.log1p(d * 10) / 0.25) % 1.0 < 0.1)
            ground = np.where(line[..., None], gcol * 0.6, gcol * (0.9 + 0.05 * ((np.floor(cx) + row) % 3))[..., None])
        elif gs == "concrete":
            slab = ((X % 0.55) < 0.012) | ((np.log1p(d * 6) / 0.5) % 1.0 < 0.04)
            ground = np.where(slab[..., None], 0.45, np.asarray([0.66, 0.65, 0.62]) * (1 + 0.08 * n1[..., None]))
        else:  # wood
            plank = ((X + 0.3 * np.floor(np.log1p(d * 8) / 0.3)) / 0.09) % 1.0
            ground = np.asarray([0.5, 0.34, 0.2]) * (0.85 + 0.15 * np.sin(X * 60 + 4 * n1))[..., None]
            ground = np.where((plank < 0.07)[..., None], ground * 0.6, ground)

        return ground

    edges = np.cumsum(rng.uniform(0.8, 2.5, 12))
    seg = np.searchsorted(edges, X[0] % edges[-1])
    gstyles = [
        cam.ground_style if rng.random() < 0.5 else str(rng.choice(GROUND_STYLES)) for _ in range(len(edges) + 1)
    ]
    ground = np.zeros((bh, bw, 3), np.float32)
    for gs in sorted(set(gstyles)):
        cols = np.isin(seg, [i for i, x in enumerate(gstyles) if x == gs])
        gpal = [pal[int(k)] for k in rng.permutation(6)]
        ground[:, cols] = np.broadcast_to(ground_style(gs, gpal), (bh, bw, 3))[:, cols]
    img = np.where(upper[..., None], wall, ground)

    # ---- street furniture at the horizon ----
    for _ in range(int(rng.integers(3, 7))):
        x0 = rng.uniform(0, SCENE_W)
        kind = rng.integers(3)
        col = pal[int(rng.integers(6))] * 0.7
        if kind == 0:  # pole / lamp
            m = (np.abs(X - x0) < 0.02) & (Y > hz - 0.9) & (Y < hz + 0.05)
        elif kind == 1:  # planter / bench
            m = (np.abs(X - x0) < rng.uniform(0.1, 0.3)) & (Y > hz - 0.18) & (Y < hz + 0.04)
        else:  # poster
            m = (np.abs(X - x0) < 0.12) & (Y > hz - 0.6) & (Y < hz - 0.25)
        img = np.where(m[..., None], col, img)
    # horizon shading / contact line
    img = img * (1 - 0.25 * np.exp(-(((Y - hz) / 0.02) ** 2)))[..., None]
    img = img + 0.02 * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------
# frame composition and the camera pipeline


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear resampling matrix (pixel centres aligned)."""
    m = np.zeros((n_out, n_in), np.float32)
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
    i1 = np.clip(i0 + 1, 0, n_in - 1)
    f = np.clip(pos - np.floor(pos), 0, 1)
    np.add.at(m, (np.arange(n_out), i0), 1 - f)
    np.add.at(m, (np.arange(n_out), i1), f)
    return m


def _gauss_matrix(n: int, sigma: float) -> np.ndarray:
    if sigma <= 1e-3:
        return np.eye(n, dtype=np.float32)
    i = np.arange(n)
    g = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2).astype(np.float32)
    return g / g.sum(1, keepdims=True)


def _box_matrix(n: int, length: float) -> np.ndarray:
    """Horizontal motion-blur (box) matrix of the given length in pixels."""
    i = np.arange(n)
    d = np.abs(i[:, None] - i[None, :]).astype(np.float32)
    half = length / 2
    w = np.clip(half + 0.5 - d, 0, 1)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


@dataclass
class Layer:
    """A sprite drawn into a subset of a tracklet's frames."""

    atlas: np.ndarray  # (NPH, SH + 2, SW + 2, 4) float32 premultiplied (render_atlas)
    frames: np.ndarray  # (n,) frame indices
    phase: np.ndarray  # (n,) int in [0, NPH)
    xc: np.ndarray  # (n,) body axis x (frame units)
    yf: np.ndarray  # (n,) feet y
    s: np.ndarray  # (n,) body height


@dataclass
class ShapeOccluder:
    """A static scene object in front of the person on some frames."""

    kind: str  # pole | bench | bin | car | bush
    frames: np.ndarray
    x: np.ndarray  # (n,) centre x per frame
    width: float
    top: float  # top y (frame units) for ground objects
    color: np.ndarray


def compose_frames(
    T: int,
    cam: Camera,
    bg: np.ndarray,
    ppu: int,
    out_hw: tuple[int, int],
    bg_x0: np.ndarray,
    bg_y0: np.ndarray,
    bg_z: np.ndarray,
    layers: list[Layer],
    shadows: tuple | None,
    occluders: list[ShapeOccluder],
    motion_blur: np.ndarray,
    gain_jitter: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render T frames of one tracklet through ``cam``'s pipeline.

    Args:
        bg_x0, bg_y0, bg_z: (T,) scene window origin and zoom (scene units per
            frame-height unit) per frame: the crop tracks the person, so the
            background scrolls and zooms.
        layers: person sprites in back-to-front order.
        shadows: (frames, xc, yf, s) where a soft ground shadow is drawn.
        motion_blur: (T,) box-blur length in output pixels (0 = none).
    Returns:
        uint8 (T, H, W, 3).
    """
    H, W = out_hw
    hn = max(8, int(round(H * cam.resolution)))  # native camera resolution
    wn = max(4, int(round(W * cam.resolution)))
    y = (np.arange(hn, dtype=np.float32) + 0.5) / hn  # frame units
    x = (np.arange(wn, dtype=np.float32) + 0.5) / hn
    bh, bw, _ = bg.shape
    sy = np.clip(((bg_y0[:, None] + y[None, :] * bg_z[:, None]) * ppu).astype(np.int64), 0, bh - 1)
    sx = (((bg_x0[:, None] + x[None, :] * bg_z[:, None]) * ppu).astype(np.int64)) % bw
    img = bg.reshape(-1, 3)[sy[:, :, None] * bw + sx[:, None, :]]  # (T, hn, wn, 3)

    if shadows is not None:
        fr, xc, yf, s = shadows
        if len(fr):
            m = np.exp(
                -(
                    ((x[None, None, :] - xc[:, None, None]) / (0.16 * s[:, None, None])) ** 2
                    + ((y[None, :, None] - yf[:, None, None]) / (0.025 * s[:, None, None])) ** 2
                )
            )
            img[fr] *= (1 - 0.45 * m)[..., None]

    for L in layers:
        if len(L.frames) == 0:
            continue
        _, sh2, sw2, _ = L.atlas.shape
        sh, sw = sh2 - 2, sw2 - 2
        v = (y[None, :] - L.yf[:, None] + L.s[:, None]) / L.s[:, None]
        u = (x[None, :] - L.xc[:, None]) / L.s[:, None]
        # bilinear sampling of the premultiplied atlas; index 0 / last = transparent border
        rf = np.clip((v - V0) / (V1 - V0) * sh - 0.5, -1.0, sh) + 1.0
        cf = np.clip((u + U_HALF) / (2 * U_HALF) * sw - 0.5, -1.0, sw) + 1.0
        r0 = np.minimum(np.floor(rf).astype(np.int64), sh)
        c0 = np.minimum(np.floor(cf).astype(np.int64), sw)
        fr_ = (rf - r0)[:, :, None, None]
        fc_ = (cf - c0)[:, None, :, None]
        base = L.phase.astype(np.int64)[:, None, None] * (sh2 * sw2) + r0[:, :, None] * sw2 + c0[:, None, :]
        flat = L.atlas.reshape(-1, 4)
        top = flat[base] * (1 - fc_) + flat[base + 1] * fc_
        bot = flat[base + sw2] * (1 - fc_) + flat[base + sw2 + 1] * fc_
        g = top * (1 - fr_) + bot * fr_  # (n, hn, wn, 4)
        if len(L.frames) == T:
            img = img * (1 - g[..., 3:]) + g[..., :3]
        else:
            img[L.frames] = img[L.frames] * (1 - g[..., 3:]) + g[..., :3]

    for oc in occluders:
        if len(oc.frames) == 0:
            continue
        xx = x[None, None, :]
        yy = y[None, :, None]
        ox = oc.x[:, None, None]
        n = len(oc.frames)
        if oc.kind == "pole":
            m = np.abs(xx - ox) < oc.width / 2
            tex = oc.color * (0.8 + 0.2 * np.cos((xx - ox) / oc.width * np.pi))[..., None]
        elif oc.kind == "bush":
            edge = oc.top + 0.04 * np.sin(xx * 47 + ox * 13) + 0.03 * np.sin(xx * 97)
            m = (yy > edge) & (np.abs(xx - ox) < oc.width / 2)
            tex = oc.color * (0.75 + 0.25 * np.sin(xx * 151 + yy * 97) * np.sin(yy * 63))[..., None]
        else:  # bench / bin / car: a box from ``top`` to the bottom with a lighter rim
            m = (yy > oc.top) & (np.abs(xx - ox) < oc.width / 2)
            rim = yy < oc.top + 0.04
            tex = oc.color * np.where(rim, 1.25, 1.0)[..., None]
            if oc.kind == "car":
                win = (yy < oc.top + 0.16) & (yy > oc.top + 0.05)
                tex = np.where(win[..., None], np.asarray([0.25, 0.3, 0.35], np.float32), tex)
        tex = np.broadcast_to(tex, (n, hn, wn, 3))
        m = np.broadcast_to(m, (n, hn, wn))
        sub = img[oc.frames]
        sub[m] = tex[m]
        img[oc.frames] = sub

    # native resolution -> output size and camera defocus (one separable linear map),
    # then per-frame horizontal motion blur on the flagged frames
    My = _gauss_matrix(H, cam.blur_sigma) @ _interp_matrix(H, hn)
    Mx = _gauss_matrix(W, cam.blur_sigma) @ _interp_matrix(W, wn)
    img = np.matmul(My, np.matmul(img.transpose(0, 3, 1, 2), Mx.T))  # (T, 3, H, W)
    for t in np.flatnonzero(motion_blur > 0):
        img[t] = img[t] @ _box_matrix(W, float(motion_blur[t])).T
    img = img.transpose(0, 2, 3, 1)

    # photometry: saturation, colour cast, brightness, contrast, gamma
    grey = img.mean(-1, keepdims=True)
    img = grey + (img - grey) * cam.saturation
    img = img * (np.asarray(cam.gains, np.float32) * cam.brightness * gain_jitter)
    img = (img - 0.5) * cam.contrast + 0.5
    img = np.clip(img, 0, 1) ** cam.gamma
    img = img + cam.noise_std * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
