"""Pedestrians of the synthetic benchmark: palettes, :class:`Person`, sampling and look-alikes.

A person has body proportions, skin, hair style/colour, an upper garment with a
colour and a pattern (plain, stripes, checks, chest logo, open jacket, two-tone
sleeves), sleeves, a lower garment (trousers/shorts/skirt), shoes, a bag
(backpack, shoulder bag, handbag) and a gait (speed, stride, arm swing).

Design choices: dark garments are drawn more often, as on real streets, so
colour alone does not identify people; :func:`derive_lookalike` copies a person
and changes exactly one non-colour detail, so look-alike pairs defeat a colour
histogram. Drawing a person is :mod:`reid_utils.synth.atlas`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

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
