"""Read image files as the library's [0, 1] RGB tensors: one deliberate conversion to RGB, one square fit.

`load_image` is the Python entry point for a source image of your own; `load_images` (selection.py) reads a
selection's files the same way, so a notebook and the pipeline see the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# Pillow opens 16-bit greyscale (PNG, TIFF) in these modes; its own conversion to RGB clips them at 255.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """A (1, 3, size, size) float image in [0, 1] from a file: converted by `read_rgb`, centre-cropped to a
    square and resized (bicubic), as `load_images` treats a selection's files."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r}: expected a positive image side in pixels (the prior's image size)")
    return to_tensor(fit_square(read_rgb(path), size)[None])


def read_rgb(path: str | os.PathLike) -> Image.Image:
    """An image file as 8-bit RGB, decoded here so that a missing, truncated or corrupt file fails naming it.

    The conversion is deliberate: EXIF orientation applied (as viewers show photos), transparency
    composited on white, greyscale and palette images expanded to RGB, 16-bit greyscale scaled to 8 bits.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"image file {str(path)!r} cannot be read as an image: {error}") from error


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8 pixels: the image centre-cropped to a square and resized (bicubic) if needed."""
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no standard range; save the image with 8 or 16 bits")
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
    if image.has_transparency_data:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1], the library's image convention."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
