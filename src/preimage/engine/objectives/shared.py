"""One forward pass per model and batch, shared by every term of a Sum that reads that model (as in Lucent).

A term of a sum that reads a model declares it through ``_reads()``: the model's output, or a named layer
(read with a forward hook). While a Sum answers one call (``loss``, ``accept``, ``value`` or ``bind``) on one
batch, `sharing` makes a `SharedForward` current: the first term to read a model that two or more reads of
the sum share runs that model once, hooks on the union of the layers they need, and keeps the output and those
activations; the other terms read them from there. Nothing survives the call: the next batch, or the no-grad
acceptance test after a gradient pass, runs the model afresh.

A read is answered from the shared pass only for the same images object, the same model object and the same
grad / inference / autocast state as the pass was run under; anything else runs the model alone as before.
Models read by one term only, and terms outside a sum, run exactly as they did (a lone layer read stops the
forward at its layer). The current pass lives in a context variable, so each thread has its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from preimage.engine.objectives.layers import (
    checked_activation,
    layer_not_called,
    read_layer,
)


@dataclass(frozen=True, eq=False)
class Read:
    """What a term reads from a model on a batch: its output (layer None) or the output of `module`."""

    model: Callable[[Tensor], object]
    layer: str | None = None
    module: nn.Module | None = None


class _Stop(Exception):
    """Raised by the last hook a layers-only pass needs, to skip the rest of the forward."""


_MISSING = object()


@dataclass(eq=False)
class _Plan:
    """Everything the terms of one call read from one model."""

    model: Callable[[Tensor], object]
    reads: int = 0
    output: bool = False
    layers: dict[str, nn.Module] = field(default_factory=dict)


@dataclass(eq=False)
class _Pass:
    """One forward of one model: its output (unless stopped early) and the first output of each hooked layer."""

    output: object = _MISSING
    activations: dict[str, object] = field(default_factory=dict)


def _mode(images: Tensor) -> tuple:
    device = images.device.type
    autocast = torch.is_autocast_enabled(device)
    return (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), autocast,
            torch.get_autocast_dtype(device) if autocast else None)


def _run(plan: _Plan, images: Tensor) -> _Pass:
    """Run plan.model once on `images` with hooks on the union of the planned layers (removed whatever happens).

    Each module keeps its first output (as read_layer does). Without an output read, the forward stops once
    every planned module has been reached; an activation the forward goes on past is cloned, so an in-place
    operation later in the model (``out += identity``, ReLU(inplace=True)) cannot change what was read.
    """
    result = _Pass()
    names_of: dict[int, list[str]] = {}
    modules: dict[int, nn.Module] = {}
    for name, module in plan.layers.items():
        names_of.setdefault(id(module), []).append(name)
        modules[id(module)] = module
    stop_early = not plan.output
    reached: set[int] = set()

    def hook(module: nn.Module, _inputs: tuple, output: object) -> None:
        key = id(module)
        if key in reached:
            return
        reached.add(key)
        last = stop_early and len(reached) == len(modules)
        kept = output.clone() if isinstance(output, Tensor) and not last else output
        for name in names_of[key]:
            result.activations[name] = kept
        if last:
            raise _Stop

    handles = [module.register_forward_hook(hook) for module in modules.values()]
    try:
        result.output = plan.model(images)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return result


class SharedForward:
    """The per-call cache: for each model that at least two reads share, one forward pass on `images`."""

    def __init__(self, images: Tensor, reads: Iterable[Read]) -> None:
        self.images = images
        plans: dict[int, _Plan] = {}
        for read in reads:
            plan = plans.setdefault(id(read.model), _Plan(read.model))
            plan.reads += 1
            if read.layer is None:
                plan.output = True
            else:
                plan.layers[read.layer] = read.module
        self._plans = {key: plan for key, plan in plans.items() if plan.reads >= 2}
        self._passes: dict[tuple, _Pass] = {}

    def _pass(self, model: Callable, images: Tensor, layer: str | None = None) -> _Pass | None:
        if images is not self.images:
            return None
        plan = self._plans.get(id(model))
        if plan is None or plan.model is not model or (layer is None and not plan.output) or (
                layer is not None and layer not in plan.layers):
            return None
        key = (id(model), _mode(images))
        if key not in self._passes:
            self._passes[key] = _run(plan, images)
        return self._passes[key]


_CURRENT: ContextVar[SharedForward | None] = ContextVar("preimage_shared_forward", default=None)


@contextmanager
def sharing(images: Tensor, reads: Iterable[Read]) -> Iterator[None]:
    """Within the block, reads of `images` by models read two or more times share one forward pass each."""
    token = _CURRENT.set(SharedForward(images, reads))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def model_output(model: Callable[[Tensor], object], images: Tensor) -> object:
    """``model(images)``, from the current shared pass when there is one for this model and batch."""
    current = _CURRENT.get()
    shared = None if current is None else current._pass(model, images)
    return model(images) if shared is None else shared.output


def layer_output(model: nn.Module, module: nn.Module, images: Tensor, layer: str) -> Tensor:
    """The output of `module` (named `layer`) when `model` runs on `images` (see `read_layer`), from the current
    shared pass when there is one for this model and batch."""
    current = _CURRENT.get()
    shared = None if current is None else current._pass(model, images, layer)
    if shared is None:
        return read_layer(model, module, images, layer)
    activation = shared.activations.get(layer, _MISSING)
    if activation is _MISSING:
        raise layer_not_called(model, layer)
    return checked_activation(activation, layer)
