"""Build samplers from config dicts, the way `preimage.engine.objectives.from_config` builds objectives.

A spec is ``{"kind": "guided" | "rejection" | "noise_opt", **keyword arguments of that sampler}``; the
sampler's own __init__ validates the values. ``repulsion_space: lpips | pixels`` picks the feature space
of the repulsion term: LPIPS needs the `perceptual` module passed in.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from preimage.engine.samplers.base import Sampler
from preimage.engine.samplers.guided import GuidedSampler
from preimage.engine.samplers.noise_opt import NoiseOptSampler
from preimage.engine.samplers.rejection import RejectionSampler

SAMPLERS: dict[str, type[Sampler]] = {"guided": GuidedSampler, "rejection": RejectionSampler, "noise_opt": NoiseOptSampler}
REPULSION_SPACES = ("pixels", "lpips")


def from_config(spec: Mapping[str, Any], perceptual: nn.Module | None = None) -> Sampler:
    """The sampler a config dict describes; an unknown kind or field raises naming it and what is allowed."""
    fields = dict(spec)
    kind = fields.pop("kind", None)
    if kind not in SAMPLERS:
        raise ValueError(f"sampler spec: unknown kind {kind!r}; allowed kinds: {', '.join(SAMPLERS)}")
    cls = SAMPLERS[kind]
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "repulsion_features"}
    space = fields.pop("repulsion_space", None)
    if space is not None:
        if "repulsion_weight" not in allowed:
            raise ValueError(f"sampler spec field 'repulsion_space' is not allowed for kind {kind!r}")
        fields["repulsion_features"] = _repulsion_features(space, perceptual)
        allowed.add("repulsion_features")
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValueError(f"sampler spec field {unknown[0]!r} is not allowed for kind {kind!r}; allowed: {sorted(allowed)}")
    return cls(**fields)


def _repulsion_features(space: str, perceptual: nn.Module | None):
    if space == "pixels":
        return None  # the samplers' default pixel feature space
    if space == "lpips":
        if perceptual is None:
            raise ValueError("sampler spec: repulsion_space 'lpips' needs an LPIPS module "
                             "(preimage.engine.models.load_lpips)")
        return perceptual.embed
    raise ValueError(f"sampler spec: repulsion_space {space!r}; expected one of {list(REPULSION_SPACES)}")
