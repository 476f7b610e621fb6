"""Build objectives from config dicts, so the pipeline config can name them.

A spec is ``{"kind": ..., **fields}``. Fields shared by every targeted kind:

- ``target``: ``"source"`` (the default: keep the source's value) or an explicit value (a counterfactual; for
  ``label`` a class index or a class name from the model's ``label_names``);
- ``target_scale`` / ``target_shift``: a counterfactual relative to the source value (not with ``target``);
- ``model``: the name of a model in `named_models` to use instead of the explained `model`.

``{"kind": "sum", "parts": [{"weight": 2.0, "kind": "label"}, {"kind": "lowpass", "factor": 4}]}`` builds a
weighted sum (weight defaults to 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from preimage.engine.objectives.base import Objective, Sum
from preimage.engine.objectives.image import box_mask, function, lowpass, masked
from preimage.engine.objectives.internal import channel, features, neuron
from preimage.engine.objectives.output import label, logits, probs, regression
from preimage.engine.objectives.targets import TargetSpec, scale, shift

_TARGET_FIELDS = {"target", "target_scale", "target_shift"}

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


# the kinds whose spec fields map straight onto their factory's keyword arguments
_BUILDERS: dict[str, Callable[..., Objective]] = {
    "label": label, "probs": probs, "logits": logits, "regression": regression, "neuron": neuron,
    "channel": channel, "features": features, "lowpass": lowpass, "masked": masked,
}


def from_config(spec: Mapping[str, Any], model: nn.Module, named_models: Mapping[str, Callable] | None = None
              ) -> Objective:
    """Build the objective a config dict describes; a bad kind or field raises naming it and what is allowed."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"objective spec must be a mapping with a 'kind', got {type(spec).__name__}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ValueError(f"objective spec: unknown kind {kind!r}; allowed kinds: {', '.join(sorted(_FIELDS))}")
    _check_fields(spec, kind)
    if kind == "sum":
        return _sum(spec, model, named_models)
    fields = {key: value for key, value in spec.items() if key not in _TARGET_FIELDS | {"kind", "model"}}
    target = _target(spec)
    if kind == "function":
        fn = _named_model(spec["model"], named_models)
        return function(fn, target, tolerance=spec["tolerance"], name=spec.get("name", spec["model"]))
    if kind == "masked":
        fields["mask"] = box_mask(fields.pop("image_size"), fields.pop("box"))
    if kind in ("lowpass", "masked"):
        return _BUILDERS[kind](target=target, **fields)
    used = _named_model(spec["model"], named_models) if "model" in spec else model
    return _BUILDERS[kind](used, target=target, **fields)


def _check_fields(spec: Mapping[str, Any], kind: str) -> None:
    required, optional = _FIELDS[kind]
    allowed = required | optional | {"kind"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"objective spec field {unknown[0]!r} is not allowed for kind {kind!r}; "
                         f"allowed fields: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(spec))
    if missing:
        raise ValueError(f"objective spec of kind {kind!r} needs field {missing[0]!r}; "
                         f"required fields: {', '.join(sorted(required))}")
    given = sorted(_TARGET_FIELDS & set(spec))
    if len(given) > 1:
        raise ValueError(f"objective spec of kind {kind!r}: give at most one of target, target_scale, "
                         f"target_shift; got {', '.join(given)}")


def _target(spec: Mapping[str, Any]) -> TargetSpec:
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
        raise ValueError(f"objective spec field 'model': unknown model {name!r}; named models: {listing}")
    return available[name]


def _sum(spec: Mapping[str, Any], model: nn.Module, named_models: Mapping[str, Callable] | None) -> Sum:
    parts = spec["parts"]
    if not isinstance(parts, list) or not parts:
        raise ValueError(f"objective spec of kind 'sum': 'parts' must be a non-empty list of specs, got {parts!r}")
    terms: tuple = ()
    for part in parts:
        if not isinstance(part, Mapping):
            raise TypeError(f"objective spec of kind 'sum': each part must be a mapping, got {part!r}")
        weight = part.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"objective spec of kind 'sum': part weight must be a number >= 0, got {weight!r}")
        objective = from_config({key: value for key, value in part.items() if key != "weight"}, model, named_models)
        terms += (weight * objective).terms
    return Sum(terms)
