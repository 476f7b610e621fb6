"""Build samplers from config dicts, the way `preimage.engine.objectives.from_config` builds objectives.

A spec is ``{"kind": "guided" | "rejection" | "noise_opt", **keyword arguments of that sampler}``; the
sampler's own __init__ validates the values. ``repulsion_space: lpips | pixels`` picks the feature space
of the repulsion term: LPIPS needs the `perceptual` module passed in. ``cone_angle`` (degrees, guided only)
stands for ``cone``: the guided sampler keeps its objective's gradient within that angle of the gradient of the
same objective read from the adversarially robust model passed in as `robust` (DVCE's cone projection,
`preimage.engine.samplers.cone`); null or absent means no cone.

`check_config` checks a spec the same way without importing the samplers (they import torch and diffusers),
so the pipeline checks every configured sampler when it reads its config: `PARAMETERS` lists each kind's
keyword arguments with the range its __init__ accepts (tests/test_config.py holds the two together). Errors
start with `where`, the spec's place in the config (e.g. ``sets.samplers.guided``), where the caller knows it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from preimage.engine.samplers.base import Sampler

WHERE = "sampler spec"  # how errors name a spec whose place in a config is unknown
REPULSION_SPACES = ("pixels", "lpips")
GRADIENT_DTYPES = ("auto", "float32", "float16", "bfloat16")  # preimage.utils.devices: "auto" and DTYPES
SOLVERS = ("ddim", "dpmsolver++", "unipc")  # preimage.engine.priors.base.SOLVERS
# kind -> the class in preimage.engine.samplers that `from_config` builds
CLASSES = {"guided": "GuidedSampler", "rejection": "RejectionSampler", "noise_opt": "NoiseOptSampler"}


def _int(low: int) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        return None if ok else f"an int >= {low}"
    return check


def _float(low: float, high: float = math.inf, low_open: bool = False) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "a number"
        if (value <= low if low_open else value < low) or value > high:
            return f"in {'(' if low_open else '['}{low}, {high}]"
        return None
    return check


def _bool(value: object) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _interval(value: object) -> str | None:
    if (isinstance(value, (list, tuple)) and len(value) == 2 and all(_float(0.0, 1.0)(v) is None for v in value)
            and value[0] < value[1]):
        return None
    return "a pair [low, high] of noise levels with 0 <= low < high <= 1"


def _choice(choices: tuple[str, ...]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if value in choices else f"one of {list(choices)}"
    return check


def _optional(inner: Callable[[object], str | None]) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        problem = inner(value)
        return None if value is None or problem is None else f"null or {problem}"
    return check


_STRENGTH = _float(0.0, 1.0, low_open=True)
_WEIGHT = _float(0.0)
_CONE_ANGLE = _float(0.0, 90.0, low_open=True)  # degrees: preimage.engine.samplers.cone.Cone's range
# kind -> {keyword argument: its check}; `repulsion_space` stands for `repulsion_features`, `cone_angle` for `cone`
PARAMETERS: dict[str, dict[str, Callable[[object], str | None]]] = {
    "guided": {
        "num_steps": _int(1), "guidance_scale": _WEIGHT, "strength": _STRENGTH, "distance_weight": _WEIGHT,
        "recurrence": _int(1), "repulsion_weight": _WEIGHT, "repulsion_space": _choice(REPULSION_SPACES),
        "batch_size": _int(1), "eta": _WEIGHT, "through_denoiser": _bool, "guidance_interval": _interval,
        "restarts": _int(0), "restart_level": _STRENGTH, "gradient_dtype": _choice(GRADIENT_DTYPES),
        "cone_angle": _optional(_CONE_ANGLE), "approach_steps": _optional(_int(1)),
    },
    "rejection": {
        "num_steps": _int(1), "strength": _STRENGTH, "batch_size": _int(1), "eta": _WEIGHT,
        "stop_after_accepted": _optional(_int(1)), "solver": _choice(SOLVERS),
    },
    "noise_opt": {
        "num_steps": _int(1), "iterations": _int(1), "lr": _float(0.0, low_open=True), "strength": _STRENGTH,
        "noise_weight": _WEIGHT, "distance_weight": _WEIGHT, "repulsion_weight": _WEIGHT,
        "repulsion_space": _choice(REPULSION_SPACES), "optimize_condition": _bool, "batch_size": _int(1),
        "stop_when_accepted": _bool,
    },
}

# the rejection sampler's defaults that decide whether its draws are a pool's (`DrawPool.serves`)
REJECTION_DRAW_DEFAULTS = {"num_steps": 25, "strength": 1.0, "eta": 0.0, "solver": "ddim", "stop_after_accepted": None}


def draws_as_pool(spec: Mapping[str, Any], num_steps: int, solver: str) -> bool:
    """Whether a rejection spec draws what a pool of `num_steps` `solver` chains from pure noise drew, the test
    `preimage.engine.samplers.DrawPool.serves` makes on the built sampler, here without importing torch."""
    draw = {**REJECTION_DRAW_DEFAULTS, **{key: spec[key] for key in REJECTION_DRAW_DEFAULTS if key in spec}}
    return (spec.get("kind") == "rejection" and draw["strength"] == 1.0 and draw["eta"] == 0.0
            and draw["stop_after_accepted"] is None and draw["num_steps"] == num_steps and draw["solver"] == solver)


def check_config(spec: object, where: str = WHERE) -> None:
    """Check a sampler spec without building the sampler or importing torch: its kind, its keyword arguments'
    names and values (the ranges the sampler's __init__ accepts); raise ValueError starting with `where`."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: a sampler spec must be a mapping with a 'kind', got {type(spec).__name__} "
                         f"{spec!r}")
    kind = spec.get("kind")
    if kind not in PARAMETERS:
        raise ValueError(f"{where}: unknown kind {kind!r}; allowed kinds: {', '.join(PARAMETERS)}"
                         + _did_you_mean(kind, PARAMETERS))
    parameters = PARAMETERS[kind]
    for name, value in spec.items():
        if name == "kind":
            continue
        if name not in parameters:
            raise ValueError(f"{where}: field {name!r} is not allowed for kind {kind!r}; allowed: "
                             f"{sorted(parameters)}" + _did_you_mean(name, parameters))
        problem = parameters[name](value)
        if problem:
            raise ValueError(f"{where}: {name} must be {problem}, got {value!r}")


def _did_you_mean(word: object, choices) -> str:
    near = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6) if isinstance(word, str) else []
    return f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""


def from_config(spec: Mapping[str, Any], perceptual: nn.Module | None = None, where: str = WHERE,
                robust: nn.Module | None = None) -> Sampler:
    """The sampler a config dict describes; an unknown kind or field raises naming it and what is allowed.
    `perceptual` (LPIPS) serves `repulsion_space: lpips`, `robust` (an adversarially robust classifier)
    `cone_angle`."""
    from preimage.engine import samplers

    check_config(spec, where)
    fields = dict(spec)
    kind = fields.pop("kind")
    space = fields.pop("repulsion_space", None)
    if space is not None:
        fields["repulsion_features"] = _repulsion_features(space, perceptual, where)
    angle = fields.pop("cone_angle", None)
    if angle is not None:
        fields["cone"] = _cone(angle, robust, where)
    try:
        return getattr(samplers, CLASSES[kind])(**fields)
    except ValueError as error:  # a range check_config does not know of
        raise ValueError(f"{where}: {error}") from None


def _repulsion_features(space: str, perceptual: nn.Module | None, where: str):
    if space == "pixels":
        return None  # the samplers' default pixel feature space
    if perceptual is None:
        raise ValueError(f"{where}: repulsion_space 'lpips' needs an LPIPS module "
                         "(preimage.engine.models.load_lpips)")
    return perceptual.embed


def uses_cone(spec: object) -> bool:
    """Whether a sampler spec asks for a cone, so the caller loads the robust model only then."""
    return isinstance(spec, Mapping) and spec.get("cone_angle") is not None


def _cone(angle: float, robust: nn.Module | None, where: str):
    from preimage.engine.samplers.cone import Cone

    if robust is None:
        raise ValueError(f"{where}: cone_angle needs the adversarially robust classifier whose gradient spans the "
                         "cone (models.robust in the pipeline; from_config(..., robust=model) from Python)")
    return Cone(robust, angle)
