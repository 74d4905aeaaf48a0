"""Background scenes of the synthetic benchmark: :func:`make_background`.

Each camera gets one textured scene of ``SCENE_H`` x ``SCENE_W`` frame-height
units. Above the camera's horizon a wall made of segments along the street
(facades, bricks, shop fronts, foliage, fences, glass), below it a ground plane
(tiles, asphalt, grass, paving, concrete, wood) whose pattern spacing grows
towards the camera (a depth cue), plus street furniture at the horizon.
Design choice: each segment has the camera's own style with probability 0.5,
so cameras are recognisable but not trivially. A tracklet's crop scrolls and
zooms over this scene (:mod:`reid_utils.synth.compose`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_utils.synth.cameras import GROUND_STYLES, UPPER_STYLES, Camera

SCENE_H, SCENE_W = 1.8, 6.0  # scene size in frame-height units


@dataclass
class _Grid:
    """Pixel-centre coordinates of a scene and its two noise fields."""

    X: np.ndarray  # (1, bw) frame-height units
    Y: np.ndarray  # (bh, 1)
    hz: float  # horizon
    n1: np.ndarray  # (bh, bw) fine noise
    n2: np.ndarray  # (bh, bw) coarse noise

    @property
    def shape(self) -> tuple[int, int]:
        return self.Y.shape[0], self.X.shape[1]


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


# ---- wall styles: (grid, palette, rng) -> (bh, bw, 3) ----
def _facade(g: _Grid, pal, rng):
    X, Y = g.X, g.Y
    wall = np.broadcast_to(pal[0] * 0.8 + 0.1, (*g.shape, 3)).copy()
    sx, sy = rng.uniform(0.28, 0.4), rng.uniform(0.25, 0.32)
    cx, cy = (X / sx) % 1.0, ((Y - 0.05) / sy) % 1.0
    win = (cx > 0.2) & (cx < 0.8) & (cy > 0.2) & (cy < 0.75)
    cell = (np.floor(X / sx) * 7 + np.floor(Y / sy) * 13).astype(int) % 5
    lit = 0.15 + 0.12 * cell[..., None]
    wall = np.where(win[..., None], np.asarray([0.2, 0.25, 0.3]) + lit * pal[1], wall)
    frame_ = ((np.abs(cx - 0.2) < 0.03) | (np.abs(cx - 0.8) < 0.03)) & (cy > 0.18) & (cy < 0.77)
    return np.where(frame_[..., None], 0.85, wall)


def _brick(g: _Grid, pal, rng):
    X, Y = g.X, g.Y
    rh, bwid = 0.055, rng.uniform(0.12, 0.16)
    row = np.floor(Y / rh)
    cx = (X + (row % 2) * bwid / 2) / bwid
    mortar = ((Y / rh) % 1.0 < 0.14) | (cx % 1.0 < 0.06)
    bid = (np.floor(cx) * 31 + row * 17) % 7
    brick = pal[0] * 0.6 + np.asarray([0.22, 0.1, 0.06]) * (0.8 + 0.06 * bid[..., None])
    return np.where(mortar[..., None], np.asarray([0.7, 0.68, 0.62]), brick)


def _shop(g: _Grid, pal, rng):
    X, Y = g.X, g.Y
    edges = np.cumsum(rng.uniform(0.5, 1.2, 16))
    idx = np.searchsorted(edges, X[0] % edges[-1])
    cols = np.stack([pal[int(k) % 6] for k in rng.integers(0, 6, 17)])
    panel = cols[idx][None, :, :] * np.ones((g.shape[0], 1, 1), np.float32)
    sign = (Y > 0.25) & (Y < 0.4)
    door = ((X % 0.9) > 0.55) & ((X % 0.9) < 0.8) & (Y > 0.55)
    glass = (Y > 0.45) & ~door
    wall = np.where(
        sign[..., None],
        panel * 1.2,
        np.where(door[..., None], panel * 0.35, np.where(glass[..., None], 0.35 + 0.25 * panel, panel * 0.8)),
    )
    letters = sign & ((np.floor(X / 0.045) * 3 + np.floor(Y / 0.05)) % 4 == 0)
    return np.where(letters[..., None], 0.95, wall)


def _foliage(g: _Grid, pal, rng):
    leaves = np.clip(0.5 + 0.35 * g.n1 + 0.25 * g.n2, 0, 1)[..., None]
    wall = np.asarray([0.16, 0.24, 0.14]) + leaves * np.asarray([0.18, 0.26, 0.14])
    trunk = ((g.X % 0.7) < 0.06) & (g.Y > 0.55)
    return np.where(trunk[..., None], np.asarray([0.3, 0.2, 0.12]), wall)


def _fence(g: _Grid, pal, rng):
    X, Y = g.X, g.Y
    sky = np.asarray([0.6, 0.7, 0.85]) * (1 - 0.3 * Y[..., None])
    bushes = (Y > 0.45 + 0.1 * g.n2)[..., None]
    wall = np.where(
        bushes, np.asarray([0.22, 0.3, 0.2]) * (1 + 0.3 * g.n1[..., None]), np.broadcast_to(sky, (*g.shape, 3))
    )
    bars = ((X % 0.085) < 0.018) & (Y > 0.35)
    rail = (np.abs(Y - 0.42) < 0.015) | (np.abs(Y - g.hz + 0.08) < 0.015)
    return np.where((bars | rail)[..., None], pal[2] * 0.5, wall)


def _glass(g: _Grid, pal, rng):
    refl = 0.45 + 0.15 * g.n1[..., None] + 0.1 * (g.X % 0.4)[..., None]
    wall = np.asarray([0.45, 0.55, 0.65]) * refl + 0.05
    mull = ((g.X % 0.42) < 0.025) | ((g.Y % 0.5) < 0.02)
    return np.where(mull[..., None], np.asarray([0.25, 0.25, 0.28]), wall)


_WALLS = {"facade": _facade, "brick": _brick, "shop": _shop, "foliage": _foliage, "fence": _fence, "glass": _glass}


# ---- ground styles: (grid, palette, depth below the horizon) -> (bh, bw, 3) ----
def _ground_style(gs: str, g: _Grid, pal, d):
    X, n1 = g.X, g.n1
    gcol = pal[0] * 0.5 + 0.25
    if gs == "tiles":
        q = (X / (0.12 + 0.5 * d)) % 1.0
        r = (np.log1p(d * 8) / 0.35) % 1.0
        line = (q < 0.06) | (r < 0.08)
        return np.where(line[..., None], gcol * 0.7, gcol)
    if gs == "asphalt":
        ground = np.asarray([0.28, 0.28, 0.3]) * (1 + 0.25 * n1[..., None])
        lane = (np.abs(g.Y - g.hz - 0.35) < 0.02) & ((X % 0.6) < 0.35)
        return np.where(lane[..., None], np.asarray([0.85, 0.8, 0.4]), ground)
    if gs == "grass":
        return np.asarray([0.3, 0.38, 0.24]) * (1 + 0.3 * n1[..., None] + 0.15 * g.n2[..., None])
    if gs == "paving":
        row = np.floor(np.log1p(d * 10) / 0.25)
        cx = (X + (row % 2) * 0.05) / 0.1
        line = (cx % 1.0 < 0.08) | ((np.log1p(d * 10) / 0.25) % 1.0 < 0.1)
        return np.where(line[..., None], gcol * 0.6, gcol * (0.9 + 0.05 * ((np.floor(cx) + row) % 3))[..., None])
    if gs == "concrete":
        slab = ((X % 0.55) < 0.012) | ((np.log1p(d * 6) / 0.5) % 1.0 < 0.04)
        return np.where(slab[..., None], 0.45, np.asarray([0.66, 0.65, 0.62]) * (1 + 0.08 * n1[..., None]))
    # wood
    plank = ((X + 0.3 * np.floor(np.log1p(d * 8) / 0.3)) / 0.09) % 1.0
    ground = np.asarray([0.5, 0.34, 0.2]) * (0.85 + 0.15 * np.sin(X * 60 + 4 * n1))[..., None]
    return np.where((plank < 0.07)[..., None], ground * 0.6, ground)


def _wall(cam: Camera, g: _Grid, pal: list, rng) -> np.ndarray:
    """The upper scene: segments of different wall styles along the street."""
    bh, bw = g.shape
    edges = np.cumsum(rng.uniform(0.8, 2.2, 12))
    seg = np.searchsorted(edges, g.X[0] % edges[-1])  # (bw,)
    styles = [cam.upper_style if rng.random() < 0.5 else str(rng.choice(UPPER_STYLES)) for _ in range(len(edges) + 1)]
    wall = np.zeros((bh, bw, 3), np.float32)
    for st in sorted(set(styles)):
        cols = np.isin(seg, [i for i, x in enumerate(styles) if x == st])
        spal = [pal[int(k)] for k in rng.permutation(6)]
        wall[:, cols] = _WALLS[st](g, spal, rng)[:, cols]
    return wall * (1.0 + 0.06 * g.n2[..., None])


def _ground(cam: Camera, g: _Grid, pal: list, rng) -> np.ndarray:
    """The ground plane: segments of different surfaces along the street."""
    bh, bw = g.shape
    d = np.maximum(g.Y - g.hz, 1e-3)  # depth cue: spacing grows towards the camera
    edges = np.cumsum(rng.uniform(0.8, 2.5, 12))
    seg = np.searchsorted(edges, g.X[0] % edges[-1])
    gstyles = [
        cam.ground_style if rng.random() < 0.5 else str(rng.choice(GROUND_STYLES)) for _ in range(len(edges) + 1)
    ]
    ground = np.zeros((bh, bw, 3), np.float32)
    for gs in sorted(set(gstyles)):
        cols = np.isin(seg, [i for i, x in enumerate(gstyles) if x == gs])
        gpal = [pal[int(k)] for k in rng.permutation(6)]
        ground[:, cols] = np.broadcast_to(_ground_style(gs, g, gpal, d), (bh, bw, 3))[:, cols]
    return ground


def _street_furniture(img: np.ndarray, g: _Grid, pal: list, rng) -> np.ndarray:
    """Poles, planters / benches and posters at the horizon."""
    X, Y, hz = g.X, g.Y, g.hz
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
    return img


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
    hz = cam.horizon
    upper = np.broadcast_to(Y < hz, (bh, bw))
    n1 = _smooth_noise(rng, bh, bw, max(2, ppu // 6))
    n2 = _smooth_noise(rng, bh, bw, max(2, ppu // 1))
    g = _Grid(X, Y, hz, n1, n2)
    wall = _wall(cam, g, pal, rng)
    ground = _ground(cam, g, pal, rng)
    img = np.where(upper[..., None], wall, ground)
    img = _street_furniture(img, g, pal, rng)
    # horizon shading / contact line
    img = img * (1 - 0.25 * np.exp(-(((Y - hz) / 0.02) ** 2)))[..., None]
    img = img + 0.02 * rng.standard_normal(img.shape).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32)
