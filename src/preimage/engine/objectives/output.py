"""Objectives on a model's output: its label, probability vector, logit vector, or regression value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.engine.objectives.base import Leaf, ToleranceObjective, check_positive
from preimage.engine.objectives.shared import Read, model_output
from preimage.engine.objectives.targets import (
    RelativeTarget,
    TargetSpec,
    as_float_target,
)

MAX_LISTED = 30  # class names an error lists (ImageNet has 1,000)


def model_logits(model: nn.Module, images: Tensor) -> Tensor:
    """The model's (B, K) output, checked, so a wrong model fails with a message rather than a shape error.
    Within a Sum's call the output comes from the pass its terms share (see `shared`)."""
    out = model_output(model, images)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != images.shape[0]:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"expected the model to return a (B, K) tensor for {images.shape[0]} images, got {shape}")
    return out


def _class_index(model: nn.Module, name: str) -> int:
    """The output index of the class `name` in the model's `label_names` (set by load_classifier and
    wrap_classifier), so a target can be a class name; an unknown name raises listing the model's names."""
    names = getattr(model, "label_names", None)
    if not names:
        raise ValueError(f"label: target {name!r}: the model has no label_names, so give a class index, or wrap "
                         "it with preimage.engine.models.wrap_classifier(..., class_names=[...])")
    if name not in names:
        shown = names if len(names) <= MAX_LISTED else [*names[:MAX_LISTED], f"... {len(names)} in all"]
        raise ValueError(f"label: target {name!r}: not a class of the model; classes are {shown} "
                         "(target=None keeps the source's class)")
    return list(names).index(name)


def _reject_relative(target: TargetSpec, kind: str, why: str) -> None:
    if isinstance(target, RelativeTarget):
        raise TypeError(f"{kind}: a relative target (scale/shift) is not allowed because {why}")


@dataclass(frozen=True, eq=False, repr=False)
class Label(Leaf):
    """Accept iff the argmax is the target class.

    Loss: the hinge ``relu(margin + logsumexp_{j != t} z_j - z_t)``. Unlike cross-entropy it is exactly 0
    once the target logit beats the soft maximum of the others by `margin`, so a guided sampler stops pushing
    an image that already holds its label and the prior keeps control of it. Loss 0 implies acceptance.
    With margin 1 the target then holds at least e/(1+e) ~ 73% of the probability. A target given as a
    class name is looked up in the model's `label_names` (its index is what `describe` records).
    """

    model: nn.Module
    margin: float = 1.0

    kind: ClassVar[str] = "label"

    def with_model(self, model: nn.Module) -> Label:
        return self._evolve(model=model)

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.model),)

    def __post_init__(self) -> None:
        check_positive(self.margin, "label margin")
        super().__post_init__()

    def _normalise_target(self, target: TargetSpec | str) -> Tensor | None:
        _reject_relative(target, self.kind, "a class index cannot be scaled or shifted")
        if target is None:
            return None
        if isinstance(target, str):
            return torch.tensor([_class_index(self.model, target)])
        tensor = torch.as_tensor(target).detach()
        if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.dim() > 1 or (tensor < 0).any():
            raise ValueError(f"label: target must be a class index >= 0 (or a 1-D tensor of them), got {target!r}")
        return tensor.long().reshape(-1)

    def _measure(self, images: Tensor) -> Tensor:
        logits = model_logits(self.model, images)
        if logits.shape[1] < 2:
            raise ValueError(f"label: the model must output at least 2 logits, got {logits.shape[1]}")
        return logits

    def _present(self, measured: Tensor) -> Tensor:
        return measured.argmax(dim=1)

    def _classes(self, logits: Tensor) -> Tensor:
        target = self._target_for(logits).expand(logits.shape[0])
        if (target >= logits.shape[1]).any():
            raise ValueError(f"label: target class {self.bound_target.tolist()} is out of range for "
                             f"{logits.shape[1]} classes")
        return target

    def loss(self, images: Tensor) -> Tensor:
        logits = self._checked_measure(images)
        target = self._classes(logits)
        target_logit = logits.gather(1, target[:, None]).squeeze(1)
        others = logits.scatter(1, target[:, None], -math.inf).logsumexp(dim=1)
        return F.relu(self.margin + others - target_logit)

    def accept(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            logits = self._checked_measure(images)
            return logits.argmax(dim=1) == self._classes(logits)

    def _parameters(self) -> dict:
        return {"margin": self.margin}


@dataclass(frozen=True, eq=False, repr=False)
class Probs(ToleranceObjective):
    """The softmax vector; accept iff KL(target || p) <= tolerance (nats). Loss = KL / tolerance."""

    model: nn.Module
    tolerance: float = 0.05

    kind: ClassVar[str] = "probs"

    def with_model(self, model: nn.Module) -> Probs:
        return self._evolve(model=model)

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.model),)

    def __post_init__(self) -> None:
        check_positive(self.tolerance, "probs tolerance")
        super().__post_init__()

    def _normalise_target(self, target: TargetSpec) -> Tensor | None:
        _reject_relative(target, self.kind, "a scaled probability vector is no longer a distribution")
        tensor = as_float_target(target, self.kind)
        if tensor is not None:
            if tensor.dim() not in (1, 2) or (tensor < 0).any() or not torch.allclose(
                    tensor.sum(-1), torch.ones(()), atol=1e-3):
                raise ValueError(f"probs: target must be a probability vector (K,) or (B, K): non-negative, "
                                 f"summing to 1; got {tensor.tolist()}")
        return tensor

    def _measure(self, images: Tensor) -> Tensor:
        return model_logits(self.model, images).log_softmax(dim=1)

    def _present(self, measured: Tensor) -> Tensor:
        return measured.exp()

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        return (torch.special.xlogy(target, target) - target * measured).sum(dim=1)

    def _boundary(self, target: Tensor) -> float:
        return self.tolerance

    def _parameters(self) -> dict:
        return {"tolerance": self.tolerance}


@dataclass(frozen=True, eq=False, repr=False)
class Logits(ToleranceObjective):
    """The logit vector; accept iff ||z - t|| <= tolerance * ||t|| (relative L2). Loss = that ratio squared."""

    model: nn.Module
    tolerance: float = 0.1

    kind: ClassVar[str] = "logits"

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.model),)

    def __post_init__(self) -> None:
        check_positive(self.tolerance, "logits tolerance")
        super().__post_init__()

    def _measure(self, images: Tensor) -> Tensor:
        return model_logits(self.model, images)

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        return (measured - target).square().sum(dim=1)

    def _boundary(self, target: Tensor) -> Tensor:
        return (self.tolerance * target.norm(dim=1)).square()

    def _parameters(self) -> dict:
        return {"tolerance": self.tolerance}


@dataclass(frozen=True, eq=False, repr=False)
class Regression(ToleranceObjective):
    """A regressor's scalar output ((B,) or (B, 1)); accept iff |y - t| <= tolerance (absolute, in the
    output's units, so it has no default). Loss = ((y - t) / tolerance) ** 2."""

    model: nn.Module
    tolerance: float

    kind: ClassVar[str] = "regression"

    def with_model(self, model: nn.Module) -> Regression:
        return self._evolve(model=model)

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.model),)

    def __post_init__(self) -> None:
        check_positive(self.tolerance, "regression tolerance")
        super().__post_init__()

    def _measure(self, images: Tensor) -> Tensor:
        out = model_output(self.model, images)
        if not isinstance(out, Tensor) or out.shape not in ((images.shape[0],), (images.shape[0], 1)):
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"regression: expected the model to return (B,) or (B, 1) for B={images.shape[0]}, "
                             f"got {shape}")
        return out.reshape(-1)

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        return (measured - target).square()

    def _boundary(self, target: Tensor) -> float:
        return self.tolerance ** 2

    def _parameters(self) -> dict:
        return {"tolerance": self.tolerance}


def label(model: nn.Module, target: TargetSpec | str = None, *, margin: float = 1.0) -> Label:
    """Keep (target=None) or reach (target=class index, or class name from the model's `label_names`) the
    model's predicted class."""
    return Label(model=model, margin=margin, target=target)


def probs(model: nn.Module, target: TargetSpec = None, *, tolerance: float = 0.05) -> Probs:
    """Keep the softmax vector within `tolerance` nats of KL divergence."""
    return Probs(model=model, tolerance=tolerance, target=target)


def logits(model: nn.Module, target: TargetSpec = None, *, tolerance: float = 0.1) -> Logits:
    """Keep the logit vector within a relative L2 distance `tolerance`."""
    return Logits(model=model, tolerance=tolerance, target=target)


def regression(model: nn.Module, target: TargetSpec = None, *, tolerance: float) -> Regression:
    """Keep a regressor's output within an absolute `tolerance`."""
    return Regression(model=model, tolerance=tolerance, target=target)
