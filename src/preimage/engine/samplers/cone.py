"""DVCE's cone projection: keep a guidance gradient within a cone around a robust model's gradient.

A non-robust classifier's gradient points mostly in adversarial, non-semantic directions; the gradient of an
adversarially robust classifier is perceptually aligned (Santurkar et al. 2019). DVCE (Augustin et al. 2022,
Sec. 3.3) guides with the explained model's gradient g projected onto the cone of half-angle alpha around the
robust model's gradient g_r of the same objective: g is kept where the angle between them is at most alpha and
replaced by the closest vector of the cone otherwise, so the guidance still asks for what the explained model
wants, but only along directions the robust model finds meaningful.

`cone_projection` works per member on the flattened gradients; `Cone` holds the robust model and the angle and
derives the robust model's twin of an objective (`Objective.with_model`). `GuidedSampler(cone=Cone(...))`
projects the objective's gradient this way before adding the distance and repulsion terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

EPS = 1e-12  # norms below this count as a zero gradient


def cone_projection(gradient: Tensor, axis: Tensor, angle: float) -> Tensor:
    """Each member's `gradient` projected onto the cone of half-angle `angle` (degrees, in (0, 90]) around its
    `axis`: the closest vector of the cone (Euclidean), on the flattened (B, ...) tensors.

    Inside the cone (an angle to the axis of at most `angle`) a gradient is kept; otherwise it becomes its
    component along the cone's edge in the plane of gradient and axis, of length |g| cos(theta - angle), which
    is 0 once theta >= angle + 90 degrees. A zero axis (the robust objective is met, or the robust model is
    flat there) offers no direction, and the gradient is kept; a zero gradient stays zero."""
    if not 0 < angle <= 90:
        raise ValueError(f"cone angle must be in (0, 90] degrees, got {angle!r}")
    if gradient.shape != axis.shape:
        raise ValueError(f"gradient {tuple(gradient.shape)} and axis {tuple(axis.shape)} must have the same shape")
    g, r = gradient.flatten(1).float(), axis.flatten(1).float()
    g_norm, r_norm = g.norm(dim=1, keepdim=True), r.norm(dim=1, keepdim=True)
    r_unit = r / r_norm.clamp(min=EPS)
    along = (g * r_unit).sum(1, keepdim=True)
    across = g - along * r_unit
    across_unit = across / across.norm(dim=1, keepdim=True).clamp(min=EPS)
    theta = torch.atan2(across.norm(dim=1, keepdim=True), along)  # in [0, pi], stable near 0 and pi
    alpha = math.radians(angle)
    edge = math.cos(alpha) * r_unit + math.sin(alpha) * across_unit  # unit vector at alpha from the axis
    length = (g_norm * torch.cos(theta - alpha)).clamp(min=0.0)
    projected = length * edge
    keep = (theta <= alpha) | (r_norm <= EPS) | (g_norm <= EPS)
    return torch.where(keep, g, projected).view_as(gradient).to(gradient.dtype)


@dataclass(frozen=True, eq=False)
class Cone:
    """The cone a guided sampler keeps the objective's gradient in: half-angle `angle` (degrees) around the
    gradient of the same objective read from `model`, an adversarially robust classifier with the explained
    one's classes and input (e.g. the world's `robust` model)."""

    model: nn.Module
    angle: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"cone model must be a torch.nn.Module (the robust classifier), got "
                             f"{type(self.model).__name__}")
        if isinstance(self.angle, bool) or not isinstance(self.angle, (int, float)) or not 0 < self.angle <= 90:
            raise ValueError(f"cone angle must be a number in (0, 90] degrees, got {self.angle!r}")
        object.__setattr__(self, "angle", float(self.angle))

    def reference(self, objective: Any) -> Any:
        """The objective read from the robust model: same kind, targets as bound and tolerances."""
        with_model = getattr(objective, "with_model", None)
        if with_model is None:
            raise ValueError(f"a cone needs an objective that can be read from another model (with_model, as "
                             f"preimage.engine.objectives have); got {type(objective).__name__}")
        return with_model(self.model)

    def project(self, gradient: Tensor, robust_gradient: Tensor) -> Tensor:
        return cone_projection(gradient, robust_gradient, self.angle)

    def describe(self) -> dict:
        return {"angle": self.angle, "model": type(self.model).__name__}
