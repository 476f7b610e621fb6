"""Targets of an objective: taken from the source image, given explicitly, or relative to the source.

A target left as ``None`` is filled in by ``Objective.bind(source)`` with the value at the source image
(the invariant set). An explicit value is a counterfactual and survives binding. A ``RelativeTarget``
(``scale(2.0)``, ``shift(-1.0)``) is a counterfactual stated relative to the source value, resolved at bind,
so "this neuron at twice its value" reads as ``neuron(model, "layer3", 5, target=scale(2.0))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor


@dataclass(frozen=True)
class RelativeTarget:
    """Target = factor * value_at_source + offset, resolved when the objective is bound to a source."""

    factor: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        for field_name in ("factor", "offset"):
            number = getattr(self, field_name)
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ValueError(f"RelativeTarget.{field_name} must be a finite number, got {number!r}")

    def resolve(self, source_value: Tensor) -> Tensor:
        return source_value * self.factor + self.offset

    def describe(self) -> dict:
        return {"scale": float(self.factor), "shift": float(self.offset)}


def scale(factor: float) -> RelativeTarget:
    """Counterfactual target `factor` times the value at the source, e.g. ``target=scale(2.0)``."""
    return RelativeTarget(factor=factor)


def shift(offset: float) -> RelativeTarget:
    """Counterfactual target the value at the source plus `offset`, e.g. ``target=shift(-3.0)``."""
    return RelativeTarget(offset=offset)


TargetSpec = Union[None, float, int, Sequence[float], Tensor, RelativeTarget]
"""What a user may pass as `target`: None (from the source), a value, or a RelativeTarget."""


def as_float_target(target: TargetSpec, kind: str) -> Tensor | RelativeTarget | None:
    """Normalise an explicit number/sequence/tensor target to a detached float tensor; keep the rest."""
    if target is None or isinstance(target, RelativeTarget):
        return target
    if isinstance(target, str):
        raise TypeError(f"{kind}: target must be None, a number, a sequence or tensor of numbers, "
                        f"or scale(...)/shift(...), got the string {target!r}")
    tensor = torch.as_tensor(target).detach()
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{kind}: target must be numeric, got dtype {tensor.dtype}")
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{kind}: target must be finite, got {tensor.tolist()}")
    return tensor


def describe_tensor(tensor: Tensor | None, max_elements: int = 64) -> float | int | list | dict | None:
    """A JSON-friendly summary: the numbers for small tensors (batch dim of 1 dropped), else the shape."""
    if tensor is None:
        return None
    if tensor.numel() > max_elements:
        return {"shape": list(tensor.shape)}
    if tensor.dim() > 0 and tensor.shape[0] == 1:
        tensor = tensor[0]
    return tensor.detach().cpu().tolist()


def describe_target(target: Tensor | RelativeTarget | None) -> str | float | int | list | dict:
    """How a target was asked for: 'source', an explicit value, or {'scale': ..., 'shift': ...}."""
    if target is None:
        return "source"
    if isinstance(target, RelativeTarget):
        return target.describe()
    return describe_tensor(target)
