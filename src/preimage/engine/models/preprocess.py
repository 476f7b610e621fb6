"""Differentiable input preprocessing on [0, 1] tensors, mirroring the libraries' PIL eval transforms.

Objectives backpropagate through the model into the image, so resizing and normalisation must be
tensor operations rather than the PIL pipelines that timm and open_clip ship.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

RESIZE_MODES = ("shortest", "longest", "squash")
INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def check_images(images: torch.Tensor, name: str = "images") -> None:
    """Reject anything that is not a (B, 3, H, W) float batch, the library-wide image convention."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"{name}: expected a float tensor (B, 3, H, W) in [0, 1], got {tuple(images.shape)} {images.dtype}"
        )


def fit_to_size(
    images: torch.Tensor, size: Sequence[int], interpolation: str = "bicubic", mode: str = "shortest"
) -> torch.Tensor:
    """Resize a batch to `size` (H, W) like open_clip/timm eval transforms, with antialiasing.

    `shortest` scales the short side to fit and centre-crops, `longest` scales the long side and
    zero-pads, `squash` ignores the aspect ratio. A batch already at `size` is returned unchanged.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r}: expected one of {list(RESIZE_MODES)}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r}: expected one of {list(INTERPOLATIONS)}")
    target = [int(size[0]), int(size[1])]
    height, width = images.shape[-2:]
    if [height, width] == target:
        return images
    method = INTERPOLATIONS[interpolation]
    if mode == "squash":
        return TF.resize(images, target, interpolation=method, antialias=True)
    ratios = (height / target[0], width / target[1])
    ratio = max(ratios) if mode == "longest" else min(ratios)
    scaled = [max(1, round(height / ratio)), max(1, round(width / ratio))]
    images = TF.resize(images, scaled, interpolation=method, antialias=True)
    return TF.center_crop(images, target)


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel (x - mean) / std with constants built on the batch's device and dtype."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t
