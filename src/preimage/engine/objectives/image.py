"""Objectives in image space: keep the coarse image, keep a masked region, or keep any function of the image.

Image distances are RMSE over the compared pixels in [0, 1] units (so tolerance 0.05 is ~13 of 255 grey
levels on average); the loss is (RMSE / tolerance) ** 2, i.e. a mean squared error, smooth at the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from preimage.engine.objectives.base import ToleranceObjective, check_positive
from preimage.engine.objectives.shared import Read, model_output
from preimage.engine.objectives.targets import TargetSpec


@dataclass(frozen=True, eq=False, repr=False)
class Lowpass(ToleranceObjective):
    """The image average-pooled by `factor`; accept iff its RMSE to the target is <= tolerance."""

    factor: int
    tolerance: float = 0.05

    kind: ClassVar[str] = "lowpass"

    def with_model(self, model: object) -> Lowpass:
        return self  # reads the image, no model

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ValueError(f"lowpass factor must be an integer >= 1, got {self.factor!r}")
        check_positive(self.tolerance, "lowpass tolerance")
        super().__post_init__()

    @property
    def name(self) -> str:
        return f"lowpass:{self.factor}"

    def _measure(self, images: Tensor) -> Tensor:
        height, width = images.shape[2:]
        if height % self.factor or width % self.factor:
            raise ValueError(f"lowpass factor {self.factor} does not divide the image size {(height, width)}")
        return F.avg_pool2d(images, self.factor)

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        return (measured - target).square().mean(dim=(1, 2, 3))

    def _boundary(self, target: Tensor) -> float:
        return self.tolerance ** 2

    def _parameters(self) -> dict:
        return {"factor": self.factor, "tolerance": self.tolerance}


@dataclass(frozen=True, eq=False, repr=False)
class Masked(ToleranceObjective):
    """Pixels under a mask kept: accept iff the mask-weighted RMSE to the target is <= tolerance.

    The mask is (H, W), (1, H, W) or (1, 1, H, W) with weights in [0, 1] (1 = keep; soft edges allowed);
    the value is ``images * mask``. See `box_mask` for a rectangle.
    """

    mask: Tensor
    tolerance: float = 0.05

    kind: ClassVar[str] = "masked"

    def with_model(self, model: object) -> Masked:
        return self  # reads the image, no model

    def __post_init__(self) -> None:
        if not isinstance(self.mask, Tensor) or self.mask.dim() not in (2, 3, 4) or any(
                size != 1 for size in self.mask.shape[:-2]):
            shape = tuple(self.mask.shape) if isinstance(self.mask, Tensor) else type(self.mask).__name__
            raise ValueError(f"masked: mask must be a tensor of shape (H, W), (1, H, W) or (1, 1, H, W), got {shape}")
        mask = self.mask.detach().float().reshape(1, 1, *self.mask.shape[-2:])
        if (mask < 0).any() or (mask > 1).any() or not (mask > 0).any():
            raise ValueError("masked: mask weights must lie in [0, 1] with at least one pixel > 0")
        object.__setattr__(self, "mask", mask)
        check_positive(self.tolerance, "masked tolerance")
        super().__post_init__()

    def _measure(self, images: Tensor) -> Tensor:
        if images.shape[2:] != self.mask.shape[2:]:
            raise ValueError(f"masked: mask of size {tuple(self.mask.shape[2:])} does not match images of size "
                             f"{tuple(images.shape[2:])}")
        return images * self.mask.to(images)

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        weight = 3 * self.mask.to(measured).square().sum()
        return (measured - target).square().sum(dim=(1, 2, 3)) / weight

    def _boundary(self, target: Tensor) -> float:
        return self.tolerance ** 2

    def _parameters(self) -> dict:
        return {"mask_size": list(self.mask.shape[2:]), "mask_area": float(self.mask.sum()),
                "tolerance": self.tolerance}


@dataclass(frozen=True, eq=False, repr=False)
class Function(ToleranceObjective):
    """Any callable images -> (B,) or (B, D) tensor; accept iff the L2 distance to the target is <= tolerance
    (absolute, in the function's units, so it has no default). Loss = (distance / tolerance) ** 2.
    Within a Sum, terms calling the same fn object (e.g. a named model) share one call per batch."""

    fn: Callable[[Tensor], Tensor]
    tolerance: float
    fn_name: str = field(default="")

    kind: ClassVar[str] = "function"

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.fn),)

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"function: fn must be callable, got {type(self.fn).__name__}")
        check_positive(self.tolerance, "function tolerance")
        object.__setattr__(self, "fn_name", self.fn_name or getattr(self.fn, "__name__", type(self.fn).__name__))
        super().__post_init__()

    @property
    def name(self) -> str:
        return f"function:{self.fn_name}"

    def _measure(self, images: Tensor) -> Tensor:
        out = model_output(self.fn, images)
        if not isinstance(out, Tensor) or out.dim() not in (1, 2) or out.shape[0] != images.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"function {self.fn_name!r} must return a (B,) or (B, D) tensor for "
                             f"B={images.shape[0]}, got {shape}")
        return out.float()

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        return (measured - target).square().reshape(measured.shape[0], -1).sum(dim=1)

    def _boundary(self, target: Tensor) -> float:
        return self.tolerance ** 2

    def _parameters(self) -> dict:
        return {"name": self.fn_name, "tolerance": self.tolerance}


def box_mask(size: int | Sequence[int], box: Sequence[int]) -> Tensor:
    """A (H, W) 0/1 mask that is 1 on rows top:bottom and columns left:right (end-exclusive, in pixels)."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if len(box) != 4:
        raise ValueError(f"box must be [top, left, bottom, right], got {list(box)}")
    top, left, bottom, right = (int(v) for v in box)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(f"box {list(box)} must satisfy 0 <= top < bottom <= {height} and 0 <= left < right <= {width}")
    mask = torch.zeros(height, width)
    mask[top:bottom, left:right] = 1.0
    return mask


def lowpass(factor: int, target: TargetSpec = None, *, tolerance: float = 0.05) -> Lowpass:
    """Keep the image's coarse content: average-pooled by `factor`, within an RMSE `tolerance`."""
    return Lowpass(factor=factor, tolerance=tolerance, target=target)


def masked(mask: Tensor, target: TargetSpec = None, *, tolerance: float = 0.05) -> Masked:
    """Keep the pixels under `mask` within an RMSE `tolerance`."""
    return Masked(mask=mask, tolerance=tolerance, target=target)


def function(fn: Callable[[Tensor], Tensor], target: TargetSpec = None, *, tolerance: float,
             name: str | None = None) -> Function:
    """Keep any function of the image within an L2 `tolerance`; `name` labels it (default: fn's name)."""
    return Function(fn=fn, tolerance=tolerance, fn_name=name or "", target=target)
