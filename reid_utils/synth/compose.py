"""Compositing a tracklet's frames: background crop, sprites, occluders, camera pipeline.

:func:`compose_frames` samples the camera's scene through a moving, zooming
window, draws soft ground shadows, warps each person's sprite atlas
(:mod:`reid_utils.synth.atlas`) into its frames by a per-frame similarity
transform (detector jitter and scale drift; bilinear sampling of the
premultiplied atlas), draws static occluders (pole, bench, bin, car, bush), and
then applies the camera: native resolution -> output size and defocus (one
separable linear map), per-frame horizontal motion blur, saturation, colour
cast, brightness, contrast, gamma and sensor noise.

Geometry convention: frames use units of the frame height (``y`` in [0, 1]
down, ``x`` in [0, W/H] right). A person of height ``s`` with feet at
``(xc, yf)`` maps ``v = (y - yf + s) / s`` and ``u = (x - xc) / s`` into body
units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_utils.synth.atlas import U_HALF, V0, V1
from reid_utils.synth.cameras import Camera


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


def _sample_background(bg, ppu, bg_x0, bg_y0, bg_z, x, y) -> np.ndarray:
    """Nearest-neighbour crop of the scene ``bg`` per frame: (T, hn, wn, 3)."""
    bh, bw, _ = bg.shape
    sy = np.clip(((bg_y0[:, None] + y[None, :] * bg_z[:, None]) * ppu).astype(np.int64), 0, bh - 1)
    sx = (((bg_x0[:, None] + x[None, :] * bg_z[:, None]) * ppu).astype(np.int64)) % bw
    return bg.reshape(-1, 3)[sy[:, :, None] * bw + sx[:, None, :]]  # (T, hn, wn, 3)


def _draw_shadows(img: np.ndarray, shadows: tuple | None, x, y) -> None:
    """Darken a soft ellipse under the feet on the frames of ``shadows`` (in place)."""
    if shadows is None:
        return
    fr, xc, yf, s = shadows
    if len(fr):
        m = np.exp(
            -(
                ((x[None, None, :] - xc[:, None, None]) / (0.16 * s[:, None, None])) ** 2
                + ((y[None, :, None] - yf[:, None, None]) / (0.025 * s[:, None, None])) ** 2
            )
        )
        img[fr] *= (1 - 0.45 * m)[..., None]


def _draw_layer(img: np.ndarray, L: Layer, x, y, T: int) -> np.ndarray:
    """Alpha-composite one sprite layer over ``img`` (T, hn, wn, 3); returns the new image."""
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
    return img


def _draw_occluder(img: np.ndarray, oc: ShapeOccluder, x, y) -> None:
    """Paint a static occluder over its frames of ``img`` (in place)."""
    _, hn, wn, _ = img.shape
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


def _camera_pipeline(img, cam: Camera, out_hw, motion_blur, gain_jitter, rng) -> np.ndarray:
    """Native (T, hn, wn, 3) -> uint8 (T, H, W, 3): resize, defocus, motion blur, photometry, noise."""
    H, W = out_hw
    _, hn, wn, _ = img.shape
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
        bg: the camera's scene (make_background), float32 (bh, bw, 3).
        ppu: scene pixels per frame-height unit.
        out_hw: output frame size (H, W).
        bg_x0, bg_y0, bg_z: (T,) scene window origin and zoom (scene units per
            frame-height unit) per frame: the crop tracks the person, so the
            background scrolls and zooms.
        layers: person sprites in back-to-front order.
        shadows: (frames, xc, yf, s) where a soft ground shadow is drawn.
        occluders: static objects drawn over the sprites.
        motion_blur: (T,) box-blur length in output pixels (0 = none).
        gain_jitter: per-tracklet brightness factor.
        rng: draws the sensor noise.
    Returns:
        uint8 (T, H, W, 3).
    """
    H, W = out_hw
    hn = max(8, int(round(H * cam.resolution)))  # native camera resolution
    wn = max(4, int(round(W * cam.resolution)))
    y = (np.arange(hn, dtype=np.float32) + 0.5) / hn  # frame units
    x = (np.arange(wn, dtype=np.float32) + 0.5) / hn
    img = _sample_background(bg, ppu, bg_x0, bg_y0, bg_z, x, y)
    _draw_shadows(img, shadows, x, y)
    for L in layers:
        if len(L.frames):
            img = _draw_layer(img, L, x, y, T)
    for oc in occluders:
        if len(oc.frames):
            _draw_occluder(img, oc, x, y)
    return _camera_pipeline(img, cam, out_hw, motion_blur, gain_jitter, rng)
