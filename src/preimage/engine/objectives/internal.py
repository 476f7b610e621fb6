"""Objectives on internal activations: one neuron, one channel, or a whole layer's feature vector.

Unit indexing: for a 4-D activation (B, C, H, W) a neuron is channel `unit` at one location (the centre
(H // 2, W // 2) unless `location=(i, j)` is given) and a channel is the spatial mean of channel `channel`;
for a 2-D activation (B, F) a neuron is feature `unit` (channel needs a 4-D layer).

Tolerance of neuron and channel: accept iff |a - t| <= rel_tolerance * max(|t|, floor). The floor keeps a
target of 0 (a silent ReLU unit, common) from demanding an exact 0: it is `min_scale` when given, otherwise
the root-mean-square of all units of the same kind in the layer at the source image, measured by bind() --
"within 10% of the layer's typical activation" for a unit that is weak at the source. Without bind or
`min_scale` the floor is 0 and a 0 target raises an error instead of accepting nothing.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.engine.objectives.base import (
    ToleranceObjective,
    check_images,
    check_positive,
)
from preimage.engine.objectives.layers import find_layer
from preimage.engine.objectives.shared import Read, layer_output
from preimage.engine.objectives.targets import TargetSpec


def _check_index(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


@dataclass(frozen=True, eq=False, repr=False)
class LayerObjective(ToleranceObjective):
    """Shared part of internal objectives: the layer lookup (validated on construction) and the hooked read
    (from the forward pass a Sum's terms share, within a Sum's call; see `shared`)."""

    model: nn.Module
    layer: str
    module: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "module", find_layer(self.model, self.layer))
        super().__post_init__()

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.model, self.layer, self.module),)

    def _activation(self, images: Tensor) -> Tensor:
        return layer_output(self.model, self.module, images, self.layer)

    @abstractmethod
    def _select(self, activation: Tensor) -> Tensor:
        """The measured quantity, (B, ...), from the layer's activation."""

    def _measure(self, images: Tensor) -> Tensor:
        return self._select(self._activation(images))


@dataclass(frozen=True, eq=False, repr=False)
class UnitObjective(LayerObjective):
    """A scalar unit per image with the relative tolerance and floor described in the module docstring."""

    rel_tolerance: float = 0.1
    min_scale: float | None = None
    source_scale: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        check_positive(self.rel_tolerance, f"{self.kind} rel_tolerance")
        if self.min_scale is not None:
            check_positive(self.min_scale, f"{self.kind} min_scale")
        super().__post_init__()

    @abstractmethod
    def _population(self, activation: Tensor) -> Tensor:
        """Every unit of the same kind in the layer, whose RMS is the default tolerance floor."""

    def bind(self, source: Tensor) -> UnitObjective:
        check_images(source, "source")
        with torch.no_grad():
            activation = self._activation(source)
            bound = self._bound_to(self._select(activation))
            rms = float(self._population(activation).square().mean().sqrt())
        return bound._evolve(source_scale=rms)

    def _floor(self) -> float:
        if self.min_scale is not None:
            return self.min_scale
        return self.source_scale or 0.0

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        return (measured - target).square()

    def _boundary(self, target: Tensor) -> Tensor:
        return (self.rel_tolerance * target.abs().clamp_min(self._floor())).square()

    def _tolerance_parameters(self) -> dict:
        return {"rel_tolerance": self.rel_tolerance, "min_scale": self.min_scale, "source_scale": self.source_scale}


@dataclass(frozen=True, eq=False, repr=False)
class Neuron(UnitObjective):
    """One unit: channel `unit` at `location` (default the centre) of a 4-D layer, or feature `unit` of a 2-D one."""

    unit: int = field(kw_only=True)
    location: tuple[int, int] | None = None

    kind: ClassVar[str] = "neuron"

    def __post_init__(self) -> None:
        _check_index(self.unit, "neuron unit")
        if self.location is not None:
            location = tuple(self.location)
            if len(location) != 2:
                raise ValueError(f"neuron location must be (i, j), got {self.location!r}")
            for index in location:
                _check_index(index, "neuron location entry")
            object.__setattr__(self, "location", location)
        super().__post_init__()

    @property
    def name(self) -> str:
        where = "" if self.location is None else f"@{self.location[0]},{self.location[1]}"
        return f"neuron:{self.layer}:{self.unit}{where}"

    def _select(self, activation: Tensor) -> Tensor:
        if activation.dim() == 2:
            if self.location is not None:
                raise ValueError(f"neuron: layer {self.layer!r} is 2-D (B, F); a location applies only to "
                                 "4-D (B, C, H, W) layers")
            return activation[:, self._checked_unit(activation.shape[1])]
        if activation.dim() == 4:
            height, width = activation.shape[2:]
            i, j = self.location if self.location is not None else (height // 2, width // 2)
            if i >= height or j >= width:
                raise ValueError(f"neuron location {(i, j)} is outside layer {self.layer!r} of spatial size "
                                 f"{(height, width)}")
            return activation[:, self._checked_unit(activation.shape[1]), i, j]
        raise ValueError(f"neuron: layer {self.layer!r} gives a {activation.dim()}-D activation "
                         f"{tuple(activation.shape)}; expected (B, F) or (B, C, H, W)")

    def _checked_unit(self, size: int) -> int:
        if self.unit >= size:
            raise ValueError(f"neuron unit {self.unit} is out of range: layer {self.layer!r} has {size} units")
        return self.unit

    def _population(self, activation: Tensor) -> Tensor:
        return activation

    def _parameters(self) -> dict:
        location = None if self.location is None else list(self.location)
        return {"layer": self.layer, "unit": self.unit, "location": location, **self._tolerance_parameters()}


@dataclass(frozen=True, eq=False, repr=False)
class Channel(UnitObjective):
    """The spatial mean of one channel of a 4-D layer (for one location use `neuron(..., location=(i, j))`)."""

    channel: int = field(kw_only=True)

    kind: ClassVar[str] = "channel"

    def __post_init__(self) -> None:
        _check_index(self.channel, "channel index")
        super().__post_init__()

    @property
    def name(self) -> str:
        return f"channel:{self.layer}:{self.channel}"

    def _channel_means(self, activation: Tensor) -> Tensor:
        if activation.dim() != 4:
            raise ValueError(f"channel: layer {self.layer!r} gives a {activation.dim()}-D activation "
                             f"{tuple(activation.shape)}; channel needs (B, C, H, W) -- for a (B, F) layer "
                             "use neuron(model, layer, unit)")
        return activation.mean(dim=(2, 3))

    def _select(self, activation: Tensor) -> Tensor:
        means = self._channel_means(activation)
        if self.channel >= means.shape[1]:
            raise ValueError(f"channel {self.channel} is out of range: layer {self.layer!r} has "
                             f"{means.shape[1]} channels")
        return means[:, self.channel]

    def _population(self, activation: Tensor) -> Tensor:
        return self._channel_means(activation)

    def _parameters(self) -> dict:
        return {"layer": self.layer, "channel": self.channel, **self._tolerance_parameters()}


@dataclass(frozen=True, eq=False, repr=False)
class Features(LayerObjective):
    """A layer's whole activation, flattened to (B, D).

    metric "l2": accept iff ||a - t|| <= tolerance * ||t|| (loss: that ratio squared);
    metric "cosine": accept iff 1 - cos(a, t) <= tolerance (loss: (1 - cos) / tolerance).
    A zero target vector has no direction or scale and raises an error.
    """

    tolerance: float = 0.1
    metric: Literal["l2", "cosine"] = "l2"

    kind: ClassVar[str] = "features"
    metrics: ClassVar[tuple[str, ...]] = ("l2", "cosine")

    def __post_init__(self) -> None:
        check_positive(self.tolerance, "features tolerance")
        if self.metric not in self.metrics:
            raise ValueError(f"features metric must be one of {list(self.metrics)}, got {self.metric!r}")
        super().__post_init__()

    @property
    def name(self) -> str:
        return f"features:{self.layer}"

    def _select(self, activation: Tensor) -> Tensor:
        return activation.flatten(start_dim=1)

    def _discrepancy(self, measured: Tensor, target: Tensor) -> Tensor:
        if self.metric == "l2":
            return (measured - target).square().sum(dim=1)
        return 1 - F.cosine_similarity(measured, target.expand_as(measured), dim=1)

    def _boundary(self, target: Tensor) -> Tensor:
        norm = target.norm(dim=1)
        if self.metric == "l2":
            return (self.tolerance * norm).square()
        return torch.where(norm > 0, self.tolerance, 0.0)

    def _parameters(self) -> dict:
        return {"layer": self.layer, "tolerance": self.tolerance, "metric": self.metric}


def neuron(model: nn.Module, layer: str, unit: int, target: TargetSpec = None, *, rel_tolerance: float = 0.1,
           location: tuple[int, int] | None = None, min_scale: float | None = None) -> Neuron:
    """Keep (or move, with a target such as scale(2.0)) one neuron of the named layer."""
    return Neuron(model=model, layer=layer, unit=unit, location=location, target=target,
                  rel_tolerance=rel_tolerance, min_scale=min_scale)


def channel(model: nn.Module, layer: str, channel: int, target: TargetSpec = None, *, rel_tolerance: float = 0.1,
            min_scale: float | None = None) -> Channel:
    """Keep (or move) the spatial mean of one channel of the named layer."""
    return Channel(model=model, layer=layer, channel=channel, target=target, rel_tolerance=rel_tolerance,
                   min_scale=min_scale)


def features(model: nn.Module, layer: str, target: TargetSpec = None, *, tolerance: float = 0.1,
             metric: Literal["l2", "cosine"] = "l2") -> Features:
    """Keep the named layer's whole activation within a relative L2 or cosine tolerance."""
    return Features(model=model, layer=layer, target=target, tolerance=tolerance, metric=metric)
