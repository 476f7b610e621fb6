"""What every sampler shares: parameter checks, per-member seeds, batching, timing and the result record.

A sampler draws n members of an objective's invariant set (or counterfactual set) from a diffusion prior.
Each member gets its own seed, drawn from the caller's generator, and its own CPU generator seeded with it, so
a member's start noise is the same on any device and whatever the batch size.
"""

from __future__ import annotations

import inspect
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from preimage.engine.priors.base import DiffusionPrior
from preimage.engine.samplers.diversity import (
    FeatureSpace,
    PixelFeatures,
    repulsion_loss,
)

SEED_HIGH = 2**31 - 1


class ObjectiveLike(Protocol):
    """The duck-typed objective a sampler needs; images are (B, 3, H, W) in [0, 1]."""

    def loss(self, images: Tensor) -> Tensor: ...

    def accept(self, images: Tensor) -> Tensor: ...

    def value(self, images: Tensor) -> Any: ...

    def describe(self) -> dict: ...


class SamplerLike(Protocol):
    """What `preimage.engine.sets` needs of a sampler: a `Sampler`, or one that takes draws made before
    (`preimage.engine.samplers.rejection.PooledRejectionSampler`)."""

    batch_size: int

    def sample(self, prior: DiffusionPrior, objective: ObjectiveLike, source: Tensor, n: int,
               generator: torch.Generator) -> SampleResult: ...

    def describe(self) -> dict: ...


@dataclass
class SampleResult:
    """Everything drawn by one `sample` call; rows are members in draw order. The images stay on the prior's
    device, so the caller's objective and metrics run where the models are; the per-member records are on the
    CPU."""

    images: Tensor
    """(n, 3, H, W) in [0, 1], float32, on the prior's device."""
    accepted: Tensor
    """(n,) bool: objective.accept on the final images."""
    loss: Tensor
    """(n,) objective.loss on the final images."""
    seconds: Tensor
    """(n,) wall seconds per member: its batch's time divided by the batch's size."""
    seeds: Tensor
    """(n,) int64: the seed of each member's generator."""
    steps: Tensor
    """(n,) int64: denoiser evaluations of each member, the cost unit that compares samplers."""
    trace: Tensor | None = None
    """(k, n) objective loss along the run (per step or per iteration), where the sampler computes it."""

    @property
    def acceptance_rate(self) -> float:
        return float(self.accepted.float().mean())


def check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def check_float(name: str, value: Any, low: float, high: float = float("inf"), low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def check_interval(name: str, value: Any) -> tuple[float, float]:
    """A (low, high) pair of noise levels with 0 <= low < high <= 1."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair [low, high] of noise levels in [0, 1], got {value!r}")
    low = check_float(f"{name}[0]", value[0], 0.0, 1.0)
    high = check_float(f"{name}[1]", value[1], 0.0, 1.0)
    if low >= high:
        raise ValueError(f"{name} must have low < high, got {value!r}")
    return low, high


def check_source(source: Tensor, image_size: int) -> Tensor:
    """The (1, 3, S, S) source image in [0, 1] the objective was bound to."""
    if isinstance(source, Tensor) and source.dim() == 4 and len(source) != 1:
        raise ValueError(f"source must be a tensor of shape (1, 3, {image_size}, {image_size}) matching the prior, "
                         f"got {tuple(source.shape)}")
    return check_sources(source, image_size, what="source")


def check_sources(sources: Tensor, image_size: int, what: str = "sources") -> Tensor:
    """A (B, 3, S, S) batch of source images in [0, 1] matching the prior (one per member of an edit)."""
    if not isinstance(sources, Tensor) or sources.dim() != 4 or tuple(sources.shape[1:]) != (3, image_size, image_size):
        shape = tuple(sources.shape) if isinstance(sources, Tensor) else type(sources).__name__
        batch = "1" if what == "source" else "B"
        raise ValueError(f"{what} must be a tensor of shape ({batch}, 3, {image_size}, {image_size}) matching the "
                         f"prior, got {shape}")
    if len(sources) == 0 or not sources.is_floating_point() or sources.min() < 0 or sources.max() > 1:
        raise ValueError(f"{what} must be a float image batch in [0, 1]")
    return sources


def check_generator(generator: object) -> torch.Generator:
    """The caller's CPU generator, which picks every member's seed (or draw)."""
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator (it seeds the members), got {generator!r}")
    return generator


@torch.no_grad()
def judge(objective: ObjectiveLike, images: Tensor) -> tuple[Tensor, Tensor]:
    """The objective's (B,) loss and acceptance of final images, on the CPU: what a sampler records per member."""
    return objective.loss(images).detach().float().cpu(), objective.accept(images).detach().bool().cpu()


def member_generators(seeds: Tensor) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]


def start_latents(
    prior: DiffusionPrior, z_source: Tensor, t_start: int | Tensor, strength: float, noise: Tensor
) -> Tensor:
    """Pure noise at strength 1 (an unconditional draw); otherwise the source noised to the first step."""
    if strength == 1.0:
        return noise
    return prior.noise_to(z_source.expand_as(noise), t_start, noise)


def check_features(features: FeatureSpace | None) -> FeatureSpace:
    """The repulsion feature space: any callable images -> (B, D), e.g. `preimage.engine.models.load_lpips(...).embed`
    (squared distances are LPIPS); None means pixels pooled to 16 x 16."""
    if features is None:
        return PixelFeatures()
    if not callable(features):
        raise ValueError(f"repulsion_features must be a callable images -> (B, D), got {features!r}")
    return features


def l1_distance(images: Tensor, source: Tensor) -> Tensor:
    """(B,) mean absolute pixel difference to the source: DVCE's closeness regulariser."""
    return (images - source).abs().flatten(1).mean(1)


def regularisers(
    images: Tensor,
    source: Tensor,
    distance_weight: float,
    repulsion_weight: float,
    repulsion_features: FeatureSpace,
) -> Tensor:
    """(B,) weighted closeness to the source plus repulsion from the other batch members."""
    extra = images.new_zeros(images.shape[0])
    if distance_weight > 0:
        extra = extra + distance_weight * l1_distance(images, source)
    if repulsion_weight > 0:
        owner = getattr(repulsion_features, "__self__", repulsion_features)  # a bound method's module, e.g. Lpips
        if isinstance(owner, nn.Module):
            owner.to(images.device)
        extra = extra + repulsion_weight * repulsion_loss(repulsion_features(images))
    return extra


def per_member_unit_rms(gradient: Tensor) -> Tensor:
    """Scale each member's gradient to root-mean-square 1 (zero stays zero): step sizes in z units."""
    gradient = gradient.float()
    rms = gradient.flatten(1).pow(2).mean(1).sqrt()
    return gradient / (rms.clamp(min=1e-12).view(-1, *[1] * (gradient.ndim - 1)))


class Sampler(ABC):
    """Draws members batch by batch; subclasses say how one batch is drawn."""

    batch_size: int

    def sample(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        source: Tensor,
        n: int,
        generator: torch.Generator,
    ) -> SampleResult:
        """Draw n members (images in [0, 1]) for `objective`, which was bound to `source` (1, 3, H, W)."""
        check_int("n", n, 1)
        check_generator(generator)
        source = check_source(source, prior.image_size).to(prior.device)
        seeds = torch.randint(0, SEED_HIGH, (n,), generator=generator, dtype=torch.long)
        with torch.no_grad():
            z_source = prior.encode(source)
        parts: list[dict[str, Tensor | None]] = []
        accepted_so_far = 0
        for batch_seeds in seeds.split(self.batch_size):
            start = time.perf_counter()
            generators = member_generators(batch_seeds)
            drawn = self._sample_batch(prior, objective, source, z_source, generators)
            parts.append(_record(objective, *drawn, batch_seeds, start))
            accepted_so_far += int(parts[-1]["accepted"].sum())
            if self._enough(accepted_so_far):
                break
        return self._collect(parts)

    def edit(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        sources: Tensor,
        generator: torch.Generator,
    ) -> SampleResult:
        """One member per source in `sources` (B, 3, H, W), each drawn from its own source (a late start with
        strength < 1 edits it), with `objective` bound to each batch of sources, so a target taken from the
        source (or relative to it) is each source's own. Member i of the result edits source i."""
        self._check_editable()
        check_generator(generator)
        sources = check_sources(sources, prior.image_size).to(prior.device)
        seeds = torch.randint(0, SEED_HIGH, (len(sources),), generator=generator, dtype=torch.long)
        parts: list[dict[str, Tensor | None]] = []
        for batch, batch_seeds in zip(sources.split(self.batch_size), seeds.split(self.batch_size)):
            start = time.perf_counter()
            bound = objective.bind(batch)
            with torch.no_grad():
                z_batch = prior.encode(batch)
            drawn = self._sample_batch(prior, bound, batch, z_batch, member_generators(batch_seeds))
            parts.append(_record(bound, *drawn, batch_seeds, start))
        return self._collect(parts)

    def _check_editable(self) -> None:
        """Raise when this sampler's batches cannot start each member from its own source."""

    @staticmethod
    def _collect(parts: list[dict[str, Tensor | None]]) -> SampleResult:
        keys = ("images", "accepted", "loss", "seconds", "seeds", "steps")
        joined = {key: torch.cat([part[key] for part in parts]) for key in keys}
        traces = [part["trace"] for part in parts]
        trace = None if traces[0] is None else torch.cat(traces, dim=1)
        return SampleResult(**joined, trace=trace)

    def _enough(self, accepted: int) -> bool:
        """Whether to stop drawing batches early; by default every requested member is drawn."""
        return False

    @abstractmethod
    def _sample_batch(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        source: Tensor,
        z_source: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, Tensor | None, int | Tensor]:
        """Images (b, 3, H, W) in [0, 1], the (k, b) loss trace or None, and the denoiser calls of every member
        (an int) or of each one (a (b,) tensor)."""

    def describe(self) -> dict:
        """The sampler's name and parameters, for provenance records."""
        params = {key: describe_value(value) for key, value in vars(self).items() if not key.startswith("_")}
        return {"sampler": type(self).__name__, **params}


def _record(objective: ObjectiveLike, images: Tensor, trace: Tensor | None, calls: int | Tensor, seeds: Tensor,
            start: float) -> dict[str, Tensor | None]:
    """One batch's part of a SampleResult: its images judged by the objective, timed from `start`."""
    loss, accepted = judge(objective, images)
    seconds = (time.perf_counter() - start) / len(seeds)
    return {
        "images": images.detach().float(),
        "accepted": accepted,
        "loss": loss,
        "seconds": torch.full((len(seeds),), seconds),
        "seeds": seeds,
        "steps": torch.as_tensor(calls, dtype=torch.long).expand(len(seeds)).clone(),
        "trace": None if trace is None else trace.detach().float().cpu(),
    }


def describe_value(value: Any) -> Any:
    """JSON-friendly parameter values: parts with a `describe` (a cone) by it, callables (feature spaces) by
    their class (and method) name."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [describe_value(item) for item in value]
    if callable(getattr(value, "describe", None)):
        return value.describe()
    if inspect.ismethod(value):  # a bound method, e.g. "Lpips.embed"
        return f"{type(value.__self__).__name__}.{value.__name__}"
    return type(value).__name__
