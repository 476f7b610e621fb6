"""Build objectives from config dicts, so the pipeline config can name them.

A spec is ``{"kind": ..., **fields}``. Fields shared by every targeted kind:

- ``target``: ``"source"`` (the default: keep the source's value) or an explicit value (a counterfactual; for
  ``label`` a class index or a class name from the model's ``label_names``);
- ``target_scale`` / ``target_shift``: a counterfactual relative to the source value (not with ``target``);
- ``model``: the name of a model in `named_models` to use instead of the explained `model`.

``{"kind": "sum", "parts": [{"weight": 2.0, "kind": "label"}, {"kind": "lowpass", "factor": 4}]}`` builds a
weighted sum (weight defaults to 1).

`check_config` checks a spec without a model (kind, field names, value types and ranges, target forms) and
imports no torch, so the pipeline checks every configured objective when it reads its config; what needs the
model (a layer name, a class name, a unit's range) is checked by `from_config`, and by binding. Errors start
with `where`, the spec's place in the config (e.g. ``sets.objectives.neuron``), where the caller knows it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from preimage.engine.objectives.base import Objective, Sum
    from preimage.engine.objectives.targets import TargetSpec

WHERE = "objective spec"  # how errors name a spec whose place in a config is unknown
_TARGET_FIELDS = {"target", "target_scale", "target_shift"}
_RELATIVE = {"target_scale", "target_shift"}

# kind -> (required fields, optional fields); "kind" itself is always allowed.
_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "label": (set(), {"margin", "model"} | _TARGET_FIELDS),
    "probs": (set(), {"tolerance", "model"} | _TARGET_FIELDS),
    "logits": (set(), {"tolerance", "model"} | _TARGET_FIELDS),
    "regression": ({"tolerance"}, {"model"} | _TARGET_FIELDS),
    "neuron": ({"layer", "unit"}, {"rel_tolerance", "location", "min_scale", "model"} | _TARGET_FIELDS),
    "channel": ({"layer", "channel"}, {"rel_tolerance", "min_scale", "model"} | _TARGET_FIELDS),
    "features": ({"layer"}, {"tolerance", "metric", "model"} | _TARGET_FIELDS),
    "lowpass": ({"factor"}, {"tolerance"} | _TARGET_FIELDS),
    "masked": ({"box", "image_size"}, {"tolerance"} | _TARGET_FIELDS),
    "function": ({"model", "tolerance"}, {"name"} | _TARGET_FIELDS),
    "sum": ({"parts"}, set()),
}
KINDS = tuple(sorted(_FIELDS))
LAYER_KINDS = ("neuron", "channel", "features")  # the kinds that read a named layer of the model
MODEL_KINDS = ("label", "probs", "logits", "regression", *LAYER_KINDS)  # the kinds that read the (explained) model
# the kinds `Objective.with_model` reads from another model with the same outputs (a guided sampler's cone)
TWIN_KINDS = ("label", "probs", "regression", "lowpass", "masked")
METRICS = ("l2", "cosine")  # of features (preimage.engine.objectives.internal.Features.metrics)
# the kinds whose target cannot be relative (scale/shift), and why
_NOT_RELATIVE = {"label": "a class index cannot be scaled or shifted",
                 "probs": "a scaled probability vector is no longer a distribution"}


# --- the model-free check ------------------------------------------------------------------------------------------


def check_config(spec: object, where: str = WHERE, models: Collection[str] | None = None) -> None:
    """Check an objective spec without a model: its kind, field names, value types and ranges and target form
    (a sum's parts too); raise ValueError starting with `where` and naming the field. `models` are the names
    a ``model`` field may take (None: not checked here). Layer names, class names and unit ranges need the
    model: `from_config` checks those."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: an objective spec must be a mapping with a 'kind', got {type(spec).__name__} "
                         f"{spec!r}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; allowed kinds: {', '.join(KINDS)}"
                         + _did_you_mean(kind, KINDS))
    _check_fields(spec, kind, where)
    if kind == "sum":
        _check_parts(spec["parts"], where, models)
        return
    for name, value in spec.items():
        if name in _VALUES:
            problem = _VALUES[name](value)
            if problem:
                raise ValueError(f"{where}: {name} must be {problem}, got {value!r}")
    if kind == "masked":
        _check_box(spec["box"], spec["image_size"], where)
    _check_target(spec, kind, where)
    if models is not None and "model" in spec and spec["model"] not in models:
        available = ", ".join(sorted(models))
        hint = (f"named models: {available}" if available else
                "no named models are available here; leave 'model' out to use the explained model")
        raise ValueError(f"{where}: field 'model': unknown model {spec['model']!r}; {hint}")


def label_target(spec: Mapping[str, Any]) -> Any:
    """The `target` a label spec names ("source", keep the source's call, when left out); "source" for other kinds."""
    return spec.get("target", "source") if spec.get("kind") == "label" else "source"


def leaves(spec: Mapping[str, Any], where: str = WHERE) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, spec) of every single objective in a checked spec: a sum's parts (without their weight, at
    '<where>.parts[i]'), or the spec itself."""
    if spec["kind"] != "sum":
        yield where, spec
        return
    for index, part in enumerate(spec["parts"]):
        yield from leaves({key: value for key, value in part.items() if key != "weight"}, f"{where}.parts[{index}]")


def _did_you_mean(word: object, choices: Collection[str]) -> str:
    near = difflib.get_close_matches(str(word), list(choices), n=3, cutoff=0.6) if isinstance(word, str) else []
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""


def _check_fields(spec: Mapping[str, Any], kind: str, where: str) -> None:
    required, optional = _FIELDS[kind]
    allowed = required | optional | {"kind"}
    unknown = sorted(set(spec) - allowed, key=str)
    if unknown:
        raise ValueError(f"{where}: field {unknown[0]!r} is not allowed for kind {kind!r}; "
                         f"allowed fields: {', '.join(sorted(allowed))}" + _did_you_mean(unknown[0], allowed))
    missing = sorted(required - set(spec))
    if missing:
        raise ValueError(f"{where}: kind {kind!r} needs field {missing[0]!r}; "
                         f"required fields: {', '.join(sorted(required))}")
    given = sorted(_TARGET_FIELDS & set(spec))
    if len(given) > 1:
        raise ValueError(f"{where}: kind {kind!r}: give at most one of target, target_scale, "
                         f"target_shift; got {', '.join(given)}")


def _check_parts(parts: object, where: str, models: Collection[str] | None) -> None:
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"{where}: kind 'sum': 'parts' must be a non-empty list of specs, got {parts!r}")
    for index, part in enumerate(parts):
        at = f"{where}.parts[{index}]"
        if not isinstance(part, Mapping):
            raise ValueError(f"{at}: kind 'sum': each part must be a mapping, got {part!r}")
        weight = part.get("weight", 1.0)
        if not _is_number(weight) or weight < 0:
            raise ValueError(f"{at}: kind 'sum': part weight must be a number >= 0, got {weight!r}")
        check_config({key: value for key, value in part.items() if key != "weight"}, at, models)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_index(value: object, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _positive(value: object) -> str | None:
    return None if _is_number(value) and value > 0 else "a finite number > 0"


def _positive_or_null(value: object) -> str | None:
    return None if value is None else _positive(value)


def _layer(value: object) -> str | None:
    return None if isinstance(value, str) and value else "a module name as in model.named_modules(), e.g. 'layer4'"


def _index(value: object) -> str | None:
    return None if _is_index(value) else "an integer >= 0"


def _location(value: object) -> str | None:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(_is_index, value))):
        return None
    return "null (the centre) or [i, j], two integers >= 0"


def _metric(value: object) -> str | None:
    return None if value in METRICS else f"one of {list(METRICS)}"


def _factor(value: object) -> str | None:
    return None if _is_index(value, 1) else "an integer >= 1"


def _image_size(value: object) -> str | None:
    if _is_index(value, 1) or (isinstance(value, (list, tuple)) and len(value) == 2
                               and all(_is_index(v, 1) for v in value)):
        return None
    return "an integer >= 1 or [height, width]"


def _box(value: object) -> str | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(map(_is_index, value)):
        return None
    return "[top, left, bottom, right], four integers >= 0"


def _text(value: object) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty string"


def _relative(value: object) -> str | None:
    return None if _is_number(value) else "a finite number"


# field -> its check (None when the value is fine, else what it must be); target is checked by kind
_VALUES: dict[str, Callable[[object], str | None]] = {
    "margin": _positive, "tolerance": _positive, "rel_tolerance": _positive, "min_scale": _positive_or_null,
    "layer": _layer, "unit": _index, "channel": _index, "location": _location, "metric": _metric,
    "factor": _factor, "image_size": _image_size, "box": _box, "name": _text, "model": _text,
    "target_scale": _relative, "target_shift": _relative,
}


def _check_box(box: list, size: int | list, where: str) -> None:
    """As `preimage.engine.objectives.image.box_mask` checks it."""
    height, width = (size, size) if isinstance(size, int) else size
    top, left, bottom, right = box
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(f"{where}: box {list(box)} must satisfy 0 <= top < bottom <= {height} and "
                         f"0 <= left < right <= {width} (image_size {size!r})")


def _numbers(value: object) -> list[float] | None:
    """The numbers of a number or a (nested) non-empty list of numbers, else None."""
    if _is_number(value):
        return [value]
    if isinstance(value, (list, tuple)) and value:
        flat = []
        for item in value:
            numbers = _numbers(item)
            if numbers is None:
                return None
            flat += numbers
        return flat
    return None


def _check_target(spec: Mapping[str, Any], kind: str, where: str) -> None:
    relative = sorted(_RELATIVE & set(spec))
    if relative and kind in _NOT_RELATIVE:
        raise ValueError(f"{where}: field {relative[0]!r} is not allowed for kind {kind!r}: {_NOT_RELATIVE[kind]}")
    target = spec.get("target", "source")
    if target is None or target == "source":
        return
    if kind == "label":
        indices = target if isinstance(target, list) else [target]
        if isinstance(target, str) or (indices and all(map(_is_index, indices))):
            return  # a class name is looked up in the model's label_names when the objective is built
        raise ValueError(f"{where}: target must be 'source', a class name or a class index >= 0, "
                         f"got {target!r}")
    values = _numbers(target)
    if values is None:
        raise ValueError(f"{where}: target must be 'source', a number or a list of numbers, got {target!r}")
    if kind == "probs":
        rows = target if isinstance(target, list) and all(isinstance(row, list) for row in target) else [target]
        if not isinstance(target, list) or any(v < 0 for v in values) or any(
                abs(sum(_numbers(row) or [0]) - 1) > 1e-3 for row in rows):
            raise ValueError(f"{where}: target must be a probability vector: non-negative numbers "
                             f"summing to 1, got {target!r}")


# --- building ------------------------------------------------------------------------------------------------------


def from_config(spec: Mapping[str, Any], model: nn.Module, named_models: Mapping[str, Callable] | None = None,
                where: str = WHERE) -> Objective:
    """Build the objective a config dict describes; a bad kind or field raises naming it and what is allowed,
    an error of the model (an unknown layer or class name) naming the spec's place `where` too."""
    check_config(spec, where)
    return _build(spec, model, named_models, where)


def _build(spec: Mapping[str, Any], model: nn.Module, named_models: Mapping[str, Callable] | None,
           where: str) -> Objective:
    if spec["kind"] == "sum":
        return _sum(spec, model, named_models, where)
    try:
        return _leaf(spec, model, named_models, where)
    except (ValueError, TypeError) as error:
        if str(error).startswith(where):
            raise
        raise (ValueError if isinstance(error, ValueError) else TypeError)(f"{where}: {error}") from None


def _leaf(spec: Mapping[str, Any], model: nn.Module, named_models: Mapping[str, Callable] | None,
          where: str) -> Objective:
    from preimage.engine.objectives.image import box_mask, function, lowpass, masked
    from preimage.engine.objectives.internal import channel, features, neuron
    from preimage.engine.objectives.layers import find_layer
    from preimage.engine.objectives.output import label, logits, probs, regression

    kind = spec["kind"]
    fields = {key: value for key, value in spec.items() if key not in _TARGET_FIELDS | {"kind", "model"}}
    target = _target(spec)
    if kind == "function":
        fn = _named_model(spec["model"], named_models)
        return function(fn, target, tolerance=spec["tolerance"], name=spec.get("name", spec["model"]))
    if kind == "masked":
        return masked(box_mask(fields.pop("image_size"), fields.pop("box")), target=target, **fields)
    if kind == "lowpass":
        return lowpass(target=target, **fields)
    used = _named_model(spec["model"], named_models) if "model" in spec else model
    if kind in LAYER_KINDS:
        try:
            find_layer(used, spec["layer"])
        except ValueError as error:
            raise ValueError(f"{where}.layer: {error}") from None
    builders = {"label": label, "probs": probs, "logits": logits, "regression": regression, "neuron": neuron,
                "channel": channel, "features": features}
    return builders[kind](used, target=target, **fields)


def _target(spec: Mapping[str, Any]) -> TargetSpec:
    from preimage.engine.objectives.targets import scale, shift

    if "target_scale" in spec:
        return scale(spec["target_scale"])
    if "target_shift" in spec:
        return shift(spec["target_shift"])
    target = spec.get("target", "source")
    return None if target == "source" else target


def _named_model(name: object, named_models: Mapping[str, Callable] | None) -> Callable:
    available = dict(named_models or {})
    if name not in available:
        listing = ", ".join(sorted(available)) or "none were given"
        raise ValueError(f"field 'model': unknown model {name!r}; named models: {listing}")
    return available[name]


def _sum(spec: Mapping[str, Any], model: nn.Module, named_models: Mapping[str, Callable] | None, where: str) -> Sum:
    from preimage.engine.objectives.base import Sum

    terms: tuple = ()
    for index, part in enumerate(spec["parts"]):
        weight = part.get("weight", 1.0)
        part_spec = {key: value for key, value in part.items() if key != "weight"}
        objective = _build(part_spec, model, named_models, f"{where}.parts[{index}]")
        terms += (weight * objective).terms
    return Sum(terms)
