"""Global counterfactual directions: one edit of a diffusion prior's latent that flips a classifier on a data set.

After Sobieski et al. 2024 (GCD), found with the classifier's outputs alone (black-box: its gradient is never
asked for). The latent is the image DDIM-inverted, deterministically, to an intermediate noise level `level`
(the first kept step of a `num_steps` schedule with strength `level`, as a late start uses it); an image is
edited by adding `magnitude` times the unit-RMS direction there and running the deterministic DDIM chain back
down. Level 1 is the fully inverted noise x_T. An intermediate level inverts almost exactly in few steps and keeps
the image's layout, so the edit moves an image only as far as the direction asks.

The direction lives in a low-dimensional subspace: a `resolution` x `resolution` grid per latent channel,
upsampled bilinearly to the latent, which makes a derivative-free search in it affordable. It starts from the
difference of the mean inverted latents of the images the classifier calls the target and of those it calls
another class, and is refined by antithetic evolution strategies (Salimans et al. 2017) on the edited training
images' mean log target probability, each capped at log 1/2 so that an image already called the target adds no
more. Every random draw comes from one seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from preimage.engine.priors.base import DiffusionPrior

LOG_HALF = math.log(0.5)  # the objective's cap per image
Scorer = Callable[[Tensor], Tensor]
"""Images (B, 3, H, W) in [0, 1] -> class probabilities (B, K): the classifier's outputs, nothing more."""


@dataclass(frozen=True)
class DirectionSettings:
    """The latent, the edit's size and the search's budget of a global direction."""

    num_steps: int = 10
    """DDIM steps of the full schedule; the inversion and the edit run its last `level` fraction."""
    level: float = 0.6
    """Noise level of the latent: the fraction of the schedule kept (1: the fully inverted noise x_T)."""
    magnitude: float = 0.25
    """The edit: the direction, at unit RMS over the latent's elements, times this (in the latent's units; the
    world's pixel latent at level 0.6 has an RMS of about 0.3)."""
    resolution: int = 8
    """Side of the grid per latent channel that the direction is searched on."""
    iterations: int = 8
    """Evolution-strategies updates after the mean-difference start."""
    population: int = 4
    """Antithetic pairs of perturbations per update."""
    sigma: float = 0.2
    """Size of a perturbation, relative to the unit-RMS direction."""
    learning_rate: float = 0.15
    """Size of an update, relative to the unit-RMS direction."""
    batch_size: int = 64
    """Images per denoiser batch. On a CPU, small enough that a batch's activations stay under glibc's largest mmap
    threshold (32 MiB) for the world's UNet: larger ones are mapped and page-faulted afresh at every pass."""
    seed: int = 0

    def __post_init__(self) -> None:
        positive = {"num_steps": self.num_steps, "resolution": self.resolution, "population": self.population,
                    "batch_size": self.batch_size}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"iterations must be an int >= 0, got {self.iterations!r}")
        if not 0 < self.level <= 1:
            raise ValueError(f"level must be in (0, 1], got {self.level!r}")
        for name in ("magnitude", "sigma", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class Direction:
    """A found direction and how the search went."""

    vector: Tensor
    """(C, h, w): the edit in the latent at unit RMS (apply with `edit`, which scales it by the magnitude)."""
    grid: Tensor
    """(C, resolution, resolution): the same direction on the search grid."""
    trace: pd.DataFrame
    """Per iteration (0: the mean-difference start): the objective and flip rate of the centre on the training
    images the classifier does not call the target, and the classifier calls spent so far."""


def invert(prior: DiffusionPrior, images: Tensor, settings: DirectionSettings) -> Tensor:
    """Images in [0, 1] DDIM-inverted (eta=0) to the latent at `settings.level`, in batches."""
    timesteps = prior.timesteps(settings.num_steps, settings.level)
    latents = []
    with torch.no_grad():
        for batch in images.split(settings.batch_size):
            z = prior.encode(batch.to(prior.device))
            for t in timesteps.flip(0):
                z = prior.invert_step(z, t)
            latents.append(z)
    return torch.cat(latents)


def regenerate(prior: DiffusionPrior, latents: Tensor, settings: DirectionSettings) -> Tensor:
    """Latents at `settings.level` run down the deterministic DDIM chain and decoded: images in [0, 1]."""
    timesteps = prior.timesteps(settings.num_steps, settings.level)
    images = []
    with torch.no_grad():
        for batch in latents.split(settings.batch_size):
            z = batch.to(prior.device)
            for t in timesteps:
                z = prior.step(z, t)
            images.append(prior.decode(z).float())
    return torch.cat(images)


def to_latent(grid: Tensor, latent_shape: tuple[int, int, int]) -> Tensor:
    """A search-grid direction (C, r, r) upsampled to the latent (C, h, w) and scaled to unit RMS."""
    return _unit(F.interpolate(grid[None], size=latent_shape[1:], mode="bilinear", align_corners=False)[0])


def _unit(tensor: Tensor) -> Tensor:
    """`tensor` scaled to unit RMS over its elements (zero stays zero)."""
    return tensor / tensor.pow(2).mean().sqrt().clamp_min(1e-12)


def edit(prior: DiffusionPrior, latents: Tensor, direction: Tensor, settings: DirectionSettings) -> Tensor:
    """The images of `latents` moved by `settings.magnitude` times the unit-RMS `direction` (C, h, w)."""
    return regenerate(prior, latents + settings.magnitude * direction.to(latents), settings)


def mean_difference(latents: Tensor, called_target: Tensor, resolution: int) -> Tensor:
    """The start: mean latent of the images called the target minus that of the others, on the search grid."""
    if not called_target.any() or called_target.all():
        raise ValueError("the mean-difference start needs training images the classifier calls the target and "
                         f"images it calls another class; it calls {int(called_target.sum())} of {len(latents)} "
                         "the target")
    difference = latents[called_target].mean(0) - latents[~called_target].mean(0)
    return F.adaptive_avg_pool2d(difference[None].float(), resolution)[0]


class _Objective:
    """The search's objective for a batch of grid directions: the mean capped log target probability of the
    training images edited by each."""

    def __init__(self, prior: DiffusionPrior, score: Scorer, latents: Tensor, target: int,
                 settings: DirectionSettings) -> None:
        self.prior, self.score, self.latents, self.target, self.settings = prior, score, latents, target, settings
        self.calls = 0

    def __call__(self, grids: Tensor) -> tuple[Tensor, Tensor]:
        """(objective, flip rate) per direction in `grids` (P, C, r, r)."""
        shape = self.latents.shape[1:]
        moves = torch.stack([to_latent(grid, shape) for grid in grids]) * self.settings.magnitude
        edited = (self.latents[None] + moves[:, None].to(self.latents)).flatten(0, 1)
        outputs = probabilities(self.score, regenerate(self.prior, edited, self.settings), self.settings.batch_size)
        self.calls += len(edited)
        target = outputs[:, self.target].view(len(grids), -1)
        flipped = (outputs.argmax(1) == self.target).view(len(grids), -1)
        return target.clamp_min(1e-6).log().clamp_max(LOG_HALF).mean(1), flipped.float().mean(1)


def probabilities(score: Scorer, images: Tensor, batch_size: int = 256) -> Tensor:
    """The classifier's probabilities for `images` on the CPU, in batches, with autograd off: outputs only."""
    with torch.no_grad():
        return torch.cat([score(batch).float().cpu() for batch in images.split(batch_size)])


def find_direction(prior: DiffusionPrior, score: Scorer, images: Tensor, target: int,
                   settings: DirectionSettings = DirectionSettings()) -> Direction:
    """One direction in the prior's latent that makes the classifier call `images` class `target`.

    `score` is the classifier as a black box (images -> probabilities). The start is the mean difference between
    the inverted images it calls `target` and the others (so `images` must hold both); the search then maximises
    the others' mean capped log target probability, edited, by antithetic evolution strategies with normalised
    steps, and returns the best direction it evaluated (the start included).
    """
    latents = invert(prior, images, settings)
    called = probabilities(score, images, settings.batch_size).argmax(1) == target
    start = _unit(mean_difference(latents, called, settings.resolution).cpu())
    objective = _Objective(prior, score, latents[~called.to(latents.device)], target, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    centre = start
    value, flips = objective(centre[None])
    best, best_value = centre, float(value[0])
    rows = [{"iteration": 0, "objective": best_value, "flip_rate": float(flips[0]), "calls": objective.calls}]
    for iteration in range(1, settings.iterations + 1):
        noise = torch.randn((settings.population, *centre.shape), generator=generator)
        candidates = torch.cat([centre + settings.sigma * noise, centre - settings.sigma * noise])
        values, _ = objective(candidates)
        gain = values[: settings.population] - values[settings.population :]
        estimate = (gain.view(-1, 1, 1, 1) * noise).mean(0)
        centre = _unit(centre + settings.learning_rate * _unit(estimate))
        value, flips = objective(centre[None])
        if float(value[0]) > best_value:
            best, best_value = centre, float(value[0])
        rows.append({"iteration": iteration, "objective": float(value[0]), "flip_rate": float(flips[0]),
                     "calls": objective.calls})
    return Direction(vector=to_latent(best, tuple(latents.shape[1:])), grid=best, trace=pd.DataFrame(rows))
