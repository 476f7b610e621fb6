"""Draw one shortcut-world image from its attributes, anti-aliased by supersampling."""

from __future__ import annotations

import numpy as np

from preimage.world.attributes import BG_COLOURS, FG_COLOURS

SUPERSAMPLE = 4
TAG_COLOUR = np.array([0, 225, 225], dtype=np.float32)
TAG_BORDER = np.array([250, 250, 250], dtype=np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] on the supersampled grid, y pointing down."""
    n = size * SUPERSAMPLE
    axis = (np.arange(n, dtype=np.float32) + 0.5) / n * 2.0 - 1.0
    return np.meshgrid(axis, axis, indexing="xy")


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Boolean mask of a shape centred at the origin in (already rotated) coordinates u, v."""
    if shape == "circle":
        return u**2 + v**2 <= (0.85 * scale) ** 2
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75 * scale
    if shape == "triangle":
        inside = np.ones_like(u, dtype=bool)
        for k in range(3):
            angle = np.pi / 2 + k * 2 * np.pi / 3
            inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5 * scale
        return inside
    if shape == "cross":
        arm, half = 0.3 * scale, scale
        return ((np.abs(u) <= arm) & (np.abs(v) <= half)) | ((np.abs(v) <= arm) & (np.abs(u) <= half))
    if shape == "ring":
        radius = np.sqrt(u**2 + v**2)
        return (radius <= 0.9 * scale) & (radius >= 0.5 * scale)
    raise ValueError(f"unknown shape {shape!r}")


def _texture_mask(texture: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    period = 0.4
    if texture == "plain":
        return np.zeros_like(x, dtype=bool)
    if texture == "stripes":
        return np.mod(x + y, period) < period / 2
    if texture == "dots":
        dx = np.mod(x, period) - period / 2
        dy = np.mod(y, period) - period / 2
        return dx**2 + dy**2 <= (period * 0.28) ** 2
    raise ValueError(f"unknown texture {texture!r}")


def _tag_masks(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A watermark-like patch in the bottom-right corner: border and inner square."""
    outer = (x >= 0.62) & (x <= 0.94) & (y >= 0.62) & (y <= 0.94)
    inner = (x >= 0.68) & (x <= 0.88) & (y >= 0.68) & (y <= 0.88)
    return outer & ~inner, inner


def render(attributes: dict, size: int) -> np.ndarray:
    """Render one image (size x size x 3, uint8) from a row of attributes."""
    x, y = _grid(size)
    bg = np.array(BG_COLOURS[attributes["bg_colour"]], dtype=np.float32)
    # The texture is the background colour shifted towards mid-grey's opposite, so it reads on any colour.
    texture_shift = 55.0 if bg.mean() < 128 else -55.0
    canvas = np.broadcast_to(bg, x.shape + (3,)).copy()
    canvas[_texture_mask(attributes["texture"], x, y)] += texture_shift

    theta = np.deg2rad(attributes["rotation"])
    dx, dy = x - attributes["x"], y - attributes["y"]
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    canvas[shape_mask(attributes["shape"], u, v, attributes["scale"])] = FG_COLOURS[attributes["fg_colour"]]

    if attributes["tag"] == "present":
        border, inner = _tag_masks(x, y)
        canvas[border] = TAG_BORDER
        canvas[inner] = TAG_COLOUR

    pooled = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.rint(pooled), 0, 255).astype(np.uint8)
