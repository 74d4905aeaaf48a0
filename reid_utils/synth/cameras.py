"""Cameras of the synthetic benchmark: :class:`Camera` and :func:`make_cameras`.

Six archetypes (sunny plaza, fluorescent corridor, shaded low-res street,
overexposed entrance, evening sodium light, crisp shopping street); a seed
permutes them over the camera ids and jitters them. A camera has its own
background style (:mod:`reid_utils.synth.scenes`), colour cast, saturation,
brightness, contrast, gamma, defocus blur, sensor noise, native resolution
(rendered small and upscaled), JPEG quality drop, viewpoint distribution,
detector jitter and kinds of static occluders. The cameras share three of their
six scene colours (one campus). ``variation`` scales every photometric departure
from a neutral camera.
"""

from __future__ import annotations

import colorsys
import dataclasses
from dataclasses import dataclass, field

import numpy as np


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
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.75))
    return [round(float(c), 3) for c in rgb]


def _mix(x, neutral, variation):
    """Scale a departure from the neutral value by ``variation``."""
    return float(neutral + (x - neutral) * variation)


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
        gains = [_mix(g * rng.uniform(0.96, 1.04), 1.0, variation) for g in a["gains"]]
        palette = shared + [_muted_color(rng) for _ in range(3)]
        cams.append(
            Camera(
                camid=i + 1,
                archetype=a["archetype"],
                upper_style=str(ups[i]),
                ground_style=str(grounds[i]),
                horizon=float(rng.uniform(0.95, 1.12)),
                gains=gains,
                saturation=_mix(a["saturation"], 1.0, variation),
                brightness=_mix(a["brightness"] * rng.uniform(0.95, 1.05), 1.0, variation),
                contrast=_mix(a["contrast"], 1.0, variation),
                gamma=_mix(a["gamma"], 1.0, variation),
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
