"""Optimise the start noise through a few-step deterministic DDIM sampler (DiG-IN style).

Where guided sampling nudges each step, this treats the whole few-step sampler as a differentiable generator
noise -> image and minimises the objective's loss over the noise with Adam, backpropagating through every step.
Each step (and the decoder) runs under activation checkpointing, so memory grows with one step, not with all.
A moment-matching penalty keeps the noise Gaussian-like (zero mean, unit variance per member), so the
optimised noise stays where the sampler was trained and its images stay on the prior's manifold. For latent
priors the prompt embedding can be optimised too (per member). Members are optimised independently (Adam is
per-coordinate) unless repulsion couples them.

With `stop_when_accepted`, a member whose image passes the objective's acceptance test keeps that image (its
first passing one, the unoptimised draw included) and the batch stops once every member has one: the
optimisation spends its iterations only on the members that still fail, and an easy objective costs little more
than rejection sampling. The acceptance test runs on the images each iteration computes anyway (one
classifier pass, no gradient).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from preimage.engine.priors.base import DiffusionPrior
from preimage.engine.samplers.base import (
    ObjectiveLike,
    Sampler,
    check_features,
    check_float,
    check_int,
    regularisers,
    start_latents,
)
from preimage.engine.samplers.diversity import FeatureSpace


def gaussian_penalty(noise: Tensor, offset: float = 0.0) -> Tensor:
    """(B,) how far each member of (B, C, H, W) noise strays from the prior's: channel means off 0, measured
    against their spread under white noise plus a per-channel `offset` (so a trained offset is not pulled
    back to grey), and the variance around them off 1."""
    noise = noise.float()
    channel_means = noise.mean((2, 3), keepdim=True)
    pixels = noise.shape[2] * noise.shape[3]
    mean_term = channel_means.pow(2).mean((1, 2, 3)) / (1 + pixels * offset**2)
    return mean_term + ((noise - channel_means).flatten(1).var(1) - 1).pow(2)


class NoiseOptSampler(Sampler):
    """Adam on the start noise (and optionally the prompt embedding) of a deterministic few-step sampler."""

    def __init__(
        self,
        num_steps: int = 4,
        iterations: int = 20,
        lr: float = 0.05,
        strength: float = 1.0,
        noise_weight: float = 1.0,
        distance_weight: float = 0.0,
        repulsion_weight: float = 0.0,
        repulsion_features: FeatureSpace | None = None,
        optimize_condition: bool = False,
        batch_size: int = 4,
        stop_when_accepted: bool = False,
    ) -> None:
        """`repulsion_features` maps images to (B, D) features, e.g. `preimage.engine.models.load_lpips(...).embed` for
        LPIPS; None means pixels pooled to 16 x 16. `stop_when_accepted` keeps each member's first image that
        passes and stops the batch once all have one."""
        self.num_steps = check_int("num_steps", num_steps, 1)
        self.iterations = check_int("iterations", iterations, 1)
        self.lr = check_float("lr", lr, 0.0, low_open=True)
        self.strength = check_float("strength", strength, 0.0, 1.0, low_open=True)
        self.noise_weight = check_float("noise_weight", noise_weight, 0.0)
        self.distance_weight = check_float("distance_weight", distance_weight, 0.0)
        self.repulsion_weight = check_float("repulsion_weight", repulsion_weight, 0.0)
        self.repulsion_features = check_features(repulsion_features)
        if not isinstance(optimize_condition, bool):
            raise ValueError(f"optimize_condition must be a bool, got {optimize_condition!r}")
        self.optimize_condition = optimize_condition
        self.batch_size = check_int("batch_size", batch_size, 1)
        if not isinstance(stop_when_accepted, bool):
            raise ValueError(f"stop_when_accepted must be a bool, got {stop_when_accepted!r}")
        self.stop_when_accepted = stop_when_accepted

    def _sample_batch(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        source: Tensor,
        z_source: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, Tensor, int]:
        timesteps = prior.timesteps(self.num_steps, self.strength)
        # optimised in float32 even for a float16 prior: Adam's eps rounds to 0 in float16
        noise = prior.sample_noise(len(generators), generators).float().requires_grad_(True)
        condition = self._initial_condition(prior, len(generators))
        parameters = [noise] if condition is None else [noise, condition]
        optimizer = torch.optim.Adam(parameters, lr=self.lr)
        kept = _Kept(len(generators))
        trace = []
        for _ in range(self.iterations):
            with torch.enable_grad():
                images = self._generate(prior, z_source, timesteps, noise, condition, checkpointed=True)
                objective_loss = objective.loss(images)
                if self.stop_when_accepted:
                    kept.update(objective, images.detach(), objective_loss.detach())
                trace.append(kept.loss_where_kept(objective_loss.detach()))
                if kept.all():
                    break
                total = (
                    objective_loss
                    + self.noise_weight * gaussian_penalty(noise, prior.noise_offset)
                    + regularisers(images, source, self.distance_weight, self.repulsion_weight, self.repulsion_features)
                )
                optimizer.zero_grad(set_to_none=True)
                total.sum().backward()
            optimizer.step()
        calls = len(trace) * len(timesteps)
        if kept.all():
            images = kept.images
        else:
            with torch.no_grad():
                images = kept.merge(self._generate(prior, z_source, timesteps, noise, condition, checkpointed=False))
            calls += len(timesteps)
        trace += [trace[-1]] * (self.iterations - len(trace))  # a stopped batch keeps its last losses
        return images, torch.stack(trace), calls

    def _initial_condition(self, prior: DiffusionPrior, batch: int) -> Tensor | None:
        """A per-member copy of the prompt embedding to optimise, or None to keep the prior's own."""
        if not self.optimize_condition:
            return None
        if prior.condition is None:
            raise ValueError(f"optimize_condition=True needs a conditional prior; {type(prior).__name__} has none")
        return prior.condition.detach().float().expand(batch, -1, -1).clone().requires_grad_(True)

    def _generate(
        self,
        prior: DiffusionPrior,
        z_source: Tensor,
        timesteps: Tensor,
        noise: Tensor,
        condition: Tensor | None,
        checkpointed: bool,
    ) -> Tensor:
        """The deterministic sampler noise -> images, optionally checkpointing each step and the decoder."""
        z = start_latents(prior, z_source, timesteps[0], self.strength, noise.to(prior.dtype))
        for t in timesteps:
            if checkpointed:
                z = checkpoint(ddim_step, prior, z, t, condition, use_reentrant=False)
            else:
                z = ddim_step(prior, z, t, condition)
        return checkpoint(prior.decode, z, use_reentrant=False) if checkpointed else prior.decode(z)


def ddim_step(prior: DiffusionPrior, z: Tensor, t: Tensor, condition: Tensor | None) -> Tensor:
    """One deterministic DDIM step under an optional condition override."""
    condition = None if condition is None else condition.to(prior.dtype)
    return prior.step(z, t, prior.predict(z, t, condition))


class _Kept:
    """Each member's first image that passed the objective, and its loss then (`stop_when_accepted`)."""

    def __init__(self, size: int) -> None:
        self.done = torch.zeros(size, dtype=torch.bool)
        self.images: Tensor | None = None
        self.loss: Tensor | None = None

    def update(self, objective: ObjectiveLike, images: Tensor, loss: Tensor) -> None:
        """Keep the images of members that pass now and had not passed before."""
        with torch.no_grad():
            new = objective.accept(images).bool().cpu() & ~self.done
        if not new.any():
            return
        if self.images is None:
            self.images, self.loss = images.clone(), loss.clone()
        on_device = new.to(images.device)
        self.images[on_device], self.loss[on_device] = images[on_device], loss[on_device]
        self.done |= new

    def all(self) -> bool:
        return bool(self.done.all())

    def loss_where_kept(self, loss: Tensor) -> Tensor:
        """`loss` with each kept member's loss at the image it keeps."""
        return loss if self.loss is None else torch.where(self.done.to(loss.device), self.loss, loss)

    def merge(self, images: Tensor) -> Tensor:
        """`images` with the kept members' images in place of theirs."""
        if self.images is None:
            return images
        return torch.where(self.done.to(images.device).view(-1, 1, 1, 1), self.images, images)
