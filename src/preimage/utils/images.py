"""Read image files as the library's [0, 1] RGB tensors: one deliberate conversion to RGB, one square fit.

`load_image` is the Python entry point for a source image of your own; `load_images` (pipeline.sources) reads a
selection's files the same way, so a notebook and the pipeline see the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    import torch

# Pillow opens 16-bit greyscale (PNG, TIFF) in these modes; its own conversion to RGB clips them at 255.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
# The colour transparent pixels are composited on: white, as browsers and image viewers show a transparent
# image on a page. A stated constant (and a `background` argument), not whatever a conversion happens to do.
BACKGROUND = (255, 255, 255)
# The smallest shorter side, in pixels, of a source image. Every source is centre-cropped and resized (bicubic,
# whose kernel reaches 4 source pixels along each axis) to the model's input, at least 16 px; a file with fewer
# pixels than that kernel per side is a placeholder (a 1x1 tracking pixel), an icon or a mistake, not an image to
# explain. Stricter minimums are a setting: `sets.sources.min_image_side` in the pipeline, `min_side=` here.
MIN_IMAGE_SIDE = 4


def load_image(
    path: str | os.PathLike,
    size: int,
    *,
    background: tuple[int, int, int] = BACKGROUND,
    min_side: int | None = MIN_IMAGE_SIDE,
) -> torch.Tensor:
    """A (1, 3, size, size) float image in [0, 1] from a file: converted by `read_rgb` (transparent pixels
    composited on `background`, white by default), centre-cropped to a square and resized (bicubic), as
    `load_images` treats a selection's files.

    An image whose shorter side is below `min_side` pixels (default MIN_IMAGE_SIDE; None: any size) is refused
    with a ValueError naming the file, its size and the minimum.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size={size!r}: expected a positive image side in pixels (the prior's image size)")
    image = read_rgb(path, background=background)
    require_min_side(path, image.size, min_side)
    return to_tensor(fit_square(image, size)[None])


def read_rgb(path: str | os.PathLike, *, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """An image file as 8-bit RGB, decoded here so that a missing, truncated or corrupt file fails naming it.

    The conversion is deliberate: EXIF orientation applied (as viewers show photos), transparency (an alpha
    channel, a palette's or a tRNS transparent colour) composited on `background` (an (r, g, b) of 0-255,
    BACKGROUND = white by default), greyscale and palette images expanded to RGB (r = g = b), 16-bit greyscale
    scaled to 8 bits (v / 257, rounded). 32-bit float images are refused: they have no standard range.
    """
    background = _checked_background(background)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image), background)
    except (OSError, SyntaxError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"image file {str(path)!r} cannot be read as an image: {error}") from error


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) of an image file from its header alone (no pixels decoded); None when the header cannot
    be read (`read_rgb` names such a file when its pixels are loaded)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError):
        return None


def require_min_side(path: str | os.PathLike, size: tuple[int, int], min_side: int | None) -> None:
    """Refuse an image of `size` (width, height) whose shorter side is below `min_side` pixels, naming its file."""
    if checked_min_side(min_side) is None:
        return
    width, height = size
    if min(width, height) < min_side:
        raise ValueError(
            f"image file {str(path)!r} is {width}x{height} pixels; source images need at least {min_side} pixels "
            f"on their shorter side (sets.sources.min_image_side, or min_side= in Python; default {MIN_IMAGE_SIDE})"
        )


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8 pixels: the image centre-cropped to a square and resized (bicubic) if needed."""
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.array(image, dtype=np.uint8)  # a writable copy, as torch.from_numpy wants


def checked_min_side(min_side: int | None) -> int | None:
    """`min_side` if it is a positive number of pixels or None (no minimum), else a ValueError."""
    if min_side is not None and (isinstance(min_side, bool) or not isinstance(min_side, int) or min_side < 1):
        raise ValueError(f"min_side={min_side!r}: expected a positive number of pixels or None")
    return min_side


def _to_rgb(image: Image.Image, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    if image.mode == "F":
        raise ValueError("32-bit float pixels (mode F) have no standard range; save the image with 8 or 16 bits")
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
    if image.has_transparency_data:
        canvas = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(canvas, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def _checked_background(background) -> tuple[int, int, int]:
    values = tuple(background) if isinstance(background, (tuple, list)) else ()
    if len(values) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values
    ):
        raise ValueError(f"background={background!r}: expected an (r, g, b) colour of integers 0-255")
    return tuple(int(v) for v in values)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1], the library's image convention."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
