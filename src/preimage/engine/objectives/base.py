"""The Objective interface, weighted sums of objectives, and the machinery shared by single objectives.

Every objective answers three questions about a batch of [0, 1] images of shape (B, 3, H, W):
``value`` (what is measured), ``loss`` (a differentiable (B,) penalty, >= 0, ~0 on target, that guided
samplers backpropagate to the image) and ``accept`` (the (B,) boolean test applied to final images).

Tolerance-based objectives share one convention: ``loss = discrepancy / boundary`` where the discrepancy is a
smooth measure of the distance to the target (a squared distance, a KL divergence, 1 - cosine) and the boundary
is its value at the edge of the tolerance. Hence ``accept <=> loss <= 1`` for them, and losses of different
kinds are in the same units ("tolerances"), so weights in a sum mean what they say.
"""

from __future__ import annotations

import copy
import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from preimage.engine.objectives.shared import Read, sharing
from preimage.engine.objectives.targets import (
    RelativeTarget,
    TargetSpec,
    as_float_target,
    describe_target,
    describe_tensor,
)


def check_images(images: Tensor, what: str = "images") -> None:
    """Reject anything that is not a float (B, 3, H, W) batch, naming what was received."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{what} must be a float tensor in [0, 1], got dtype {images.dtype}")


def check_positive(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


_NO_SUBTRACTION = (
    "objectives cannot be subtracted or negated: every loss is >= 0 and ~0 on target, so a negative weight would "
    "reward leaving that target without bound while `accept` still demands it. To move a quantity away from its "
    "source value give it another target, e.g. b.with_target(scale(2.0)), and add it."
)


class Objective(ABC):
    """A measured quantity of a model (or of the image) plus a target, a loss and an acceptance test.

    Objectives compose like Lucent's: ``a + b`` and ``2.0 * a`` give a weighted ``Sum``, whose terms share one
    forward pass per model and call (see `preimage.engine.objectives.shared`).
    """

    @abstractmethod
    def value(self, images: Tensor) -> Tensor | dict[str, Tensor]:
        """The measured quantity, (B, ...)."""

    @abstractmethod
    def loss(self, images: Tensor) -> Tensor:
        """(B,) differentiable penalty, >= 0 and ~0 on target."""

    @abstractmethod
    def accept(self, images: Tensor) -> Tensor:
        """(B,) bool: does each image satisfy the objective?"""

    @abstractmethod
    def bind(self, source: Tensor) -> Objective:
        """A copy whose targets not given explicitly are taken from the source image(s)."""

    @abstractmethod
    def describe(self) -> dict:
        """JSON-serialisable description for artifact rows."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Short label, used as the key of this part's value in a Sum."""

    def with_model(self, model: torch.nn.Module) -> Objective:
        """The same objective (kind, targets as bound, tolerances) read from `model`, a model with the same
        outputs as the one it reads, e.g. an adversarially robust twin of the explained classifier (the guided
        sampler's cone, `preimage.engine.samplers.cone`). Objectives on a model's output (label, probs,
        regression) read `model` instead; image-space ones (lowpass, masked) read no model and stay as they are.
        The others raise: a layer's units, a logit vector's scale and a function belong to their own model."""
        raise ValueError(f"{self.name}: cannot be read from another model (its units, scale or function are its "
                         "own model's); a cone needs objectives on the model's output (label, probs, regression) "
                         "or in image space (lowpass, masked)")

    def _reads(self) -> tuple[Read, ...]:
        """The model outputs and layers this objective reads, so a Sum can run each model once per batch.

        Reading them through `shared.model_output` / `shared.layer_output` is what lets a term use the shared
        pass; an objective that declares nothing runs its models itself."""
        return ()

    def __add__(self, other: object) -> Sum:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum(_terms(self) + _terms(other))

    def __mul__(self, weight: object) -> Sum:
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            return NotImplemented
        return Sum(tuple((w * weight, part) for w, part in _terms(self)))

    __rmul__ = __mul__

    def __sub__(self, other: object) -> Sum:
        raise TypeError(_NO_SUBTRACTION)

    def __neg__(self) -> Sum:
        raise TypeError(_NO_SUBTRACTION)

    def __repr__(self) -> str:
        items = ", ".join(f"{key}={value!r}" for key, value in self.describe().items() if key != "kind")
        return f"{self.describe()['kind']}({items})"


def _terms(objective: Objective) -> tuple[tuple[float, Objective], ...]:
    return objective.terms if isinstance(objective, Sum) else ((1.0, objective),)


class Sum(Objective):
    """Weighted sum: loss = sum of weight * part loss; accept = every part accepts (weights play no part);
    value = dict from each part's name to its value (a '#2', '#3' suffix separates parts of the same name).

    Within one call on one batch, parts that read the same model share a single forward pass of it.
    """

    def __init__(self, terms: tuple[tuple[float, Objective], ...]) -> None:
        if not terms:
            raise ValueError("Sum needs at least one (weight, objective) term")
        for weight, part in terms:
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
                raise ValueError(f"Sum weight must be a finite number, got {weight!r}")
            if weight < 0:
                raise ValueError(f"Sum weight must be >= 0 (losses are >= 0 and ~0 on target), got {weight!r}")
            if not isinstance(part, Objective) or isinstance(part, Sum):
                raise TypeError(f"Sum parts must be single objectives, got {type(part).__name__}")
        self.terms = tuple((float(weight), part) for weight, part in terms)

    @property
    def name(self) -> str:
        return "+".join(part.name for _, part in self.terms)

    def _keys(self) -> list[str]:
        counts: dict[str, int] = {}
        keys = []
        for _, part in self.terms:
            counts[part.name] = counts.get(part.name, 0) + 1
            keys.append(part.name if counts[part.name] == 1 else f"{part.name}#{counts[part.name]}")
        return keys

    def _reads(self) -> tuple[Read, ...]:
        return tuple(read for _, part in self.terms for read in part._reads())

    def value(self, images: Tensor) -> dict[str, Tensor]:
        with sharing(images, self._reads()):
            return {key: part.value(images) for key, (_, part) in zip(self._keys(), self.terms)}

    def loss(self, images: Tensor) -> Tensor:
        with sharing(images, self._reads()):
            return sum(weight * part.loss(images) for weight, part in self.terms)

    def accept(self, images: Tensor) -> Tensor:
        with sharing(images, self._reads()):
            verdicts = [part.accept(images) for _, part in self.terms]
        return torch.stack(verdicts).all(dim=0)

    def bind(self, source: Tensor) -> Sum:
        with sharing(source, self._reads()):
            return Sum(tuple((weight, part.bind(source)) for weight, part in self.terms))

    def with_model(self, model: torch.nn.Module) -> Sum:
        return Sum(tuple((weight, part.with_model(model)) for weight, part in self.terms))

    def describe(self) -> dict:
        return {"kind": "sum", "parts": [{"weight": w, "objective": p.describe()} for w, p in self.terms]}

    def __repr__(self) -> str:
        return " + ".join(f"{weight:g} * {part!r}" for weight, part in self.terms)


@dataclass(frozen=True, eq=False, repr=False)
class Leaf(Objective):
    """A single objective with a target: the shared value / bind / with_target / describe logic.

    Subclasses define `_measure` (the differentiable raw measurement) plus loss and accept. `_present` turns
    a measurement into the reported value (e.g. logits -> class index); a source-derived target is taken
    from it.
    """

    target: TargetSpec = field(default=None, kw_only=True)
    bound_target: Tensor | None = field(default=None, init=False)

    kind: ClassVar[str]

    def __post_init__(self) -> None:
        normalised = self._normalise_target(self.target)
        object.__setattr__(self, "target", normalised)
        object.__setattr__(self, "bound_target", normalised if isinstance(normalised, Tensor) else None)

    # --- hooks for subclasses -------------------------------------------------------------------
    def _normalise_target(self, target: TargetSpec) -> Tensor | RelativeTarget | None:
        return as_float_target(target, self.kind)

    @abstractmethod
    def _measure(self, images: Tensor) -> Tensor: ...

    def _present(self, measured: Tensor) -> Tensor:
        return measured

    def _parameters(self) -> dict:
        """Kind-specific fields for describe()."""
        return {}

    # --- the Objective interface ------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.kind

    def value(self, images: Tensor) -> Tensor:
        return self._present(self._checked_measure(images))

    def bind(self, source: Tensor) -> Leaf:
        with torch.no_grad():
            return self._bound_to(self._checked_measure(source, "source"))

    def with_target(self, target: TargetSpec) -> Leaf:
        """A copy asking for another target (explicit or relative); relative ones need bind() again."""
        normalised = self._normalise_target(target)
        return self._evolve(target=normalised, bound_target=normalised if isinstance(normalised, Tensor) else None)

    def describe(self) -> dict:
        return {"kind": self.kind, **self._parameters(), "target": describe_target(self.target),
                "bound_target": describe_tensor(self.bound_target)}

    # --- shared machinery ---------------------------------------------------------------------------
    def _evolve(self, **changes: object) -> Leaf:
        twin = copy.copy(self)
        for key, value in changes.items():
            object.__setattr__(twin, key, value)
        return twin

    def _checked_measure(self, images: Tensor, what: str = "images") -> Tensor:
        check_images(images, what)
        return self._measure(images)

    def _bound_to(self, measured_source: Tensor) -> Leaf:
        """Resolve the requested target against the source measurement."""
        source_value = self._present(measured_source).detach()
        if self.target is None:
            resolved = source_value
        elif isinstance(self.target, RelativeTarget):
            resolved = self.target.resolve(source_value)
        else:
            resolved = self.target
        return self._evolve(bound_target=resolved)

    def _target_for(self, measured: Tensor) -> Tensor:
        """The bound target on the measurement's device, shaped to broadcast against the value (B, ...)."""
        if self.bound_target is None:
            raise RuntimeError(f"{self!r} has no target yet: call .bind(source) first, or give an explicit target")
        value_shape = self._present(measured.detach()).shape
        target = self.bound_target.to(measured.device)
        if target.is_floating_point():
            target = target.to(measured.dtype)
        if target.dim() == len(value_shape) - 1:
            target = target.unsqueeze(0)
        if target.shape[1:] != value_shape[1:] or target.shape[0] not in (1, value_shape[0]):
            raise ValueError(f"{self.kind}: target of shape {tuple(self.bound_target.shape)} does not fit values of "
                             f"shape {tuple(value_shape)}; expected (1, ...) or (B, ...) with matching trailing dims")
        return target


@dataclass(frozen=True, eq=False, repr=False)
class ToleranceObjective(Leaf):
    """An objective accepted within a tolerance: loss = discrepancy / boundary, accept <=> loss <= 1.

    Subclasses define `_discrepancy` (smooth, >= 0, 0 on target) and `_boundary` (its value at the edge of
    the tolerance); see the module docstring.
    """

    @abstractmethod
    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor: ...

    @abstractmethod
    def _boundary(self, target: Tensor) -> Tensor | float: ...

    def loss(self, images: Tensor) -> Tensor:
        measured = self._checked_measure(images)
        target = self._target_for(measured)
        return self._discrepancy(measured, target) / self._checked_boundary(target)

    def accept(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            measured = self._checked_measure(images)
            target = self._target_for(measured)
            return self._discrepancy(measured, target) <= self._checked_boundary(target)

    def _checked_boundary(self, target: Tensor) -> Tensor | float:
        boundary = self._boundary(target)
        if not bool(torch.all(torch.as_tensor(boundary) > 0)):
            raise ValueError(f"{self!r}: the tolerance around this target is 0, so nothing but an exact match "
                             "would be accepted; use a non-zero target, bind(source) to measure a floor, "
                             "or give min_scale")
        return boundary
