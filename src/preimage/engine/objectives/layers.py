"""Read a named layer's activation with a forward hook that lives only for one call."""

from __future__ import annotations

import difflib

from torch import Tensor, nn


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule called `layer` in ``model.named_modules()``; an unknown name lists the nearest ones."""
    modules = dict(model.named_modules())
    if isinstance(layer, str) and layer in modules:
        return modules[layer]
    near = difflib.get_close_matches(str(layer), [name for name in modules if name], n=5, cutoff=0.5)
    if near:
        hint = f"nearest matches: {', '.join(near)}"
    else:
        hint = f"top-level modules: {', '.join(name for name in modules if name and '.' not in name)}"
    raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__} (names as in "
                     f"model.named_modules()); {hint}")


class _LayerReached(Exception):
    """Raised by the hook to carry the activation out and stop the forward pass there."""

    def __init__(self, activation: object) -> None:
        super().__init__("layer reached")
        self.activation = activation


def read_layer(model: nn.Module, module: nn.Module, images: Tensor, layer: str) -> Tensor:
    """Run `model` on `images` up to `module` and return its output (differentiable w.r.t. the images).

    The hook stops the forward at the layer: later layers are never computed (cheaper, and no in-place
    activation after the layer can overwrite what was read). It is removed whatever happens.
    """

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
        raise _LayerReached(output)

    handle = module.register_forward_hook(hook)
    try:
        model(images)
    except _LayerReached as reached:
        activation = reached.activation
    else:
        raise layer_not_called(model, layer)
    finally:
        handle.remove()
    return checked_activation(activation, layer)


def layer_not_called(model: nn.Module, layer: str) -> RuntimeError:
    return RuntimeError(f"layer {layer!r} was not called during the forward pass of {type(model).__name__}")


def checked_activation(activation: object, layer: str) -> Tensor:
    """The hooked output of `layer`, which must be a single tensor."""
    if not isinstance(activation, Tensor):
        raise TypeError(f"layer {layer!r} returned {type(activation).__name__}, expected a tensor; pick a "
                        "module that outputs a single tensor")
    return activation
