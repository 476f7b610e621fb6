"""Optimise the start noise through a few-step deterministic DDIM sampler (DiG-IN style).

Where guided sampling nudges each step, this treats the whole few-step sampler as a differentiable generator
noise -> image and minimises the objective's loss over the noise with Adam, backpropagating through every step.
Each step (and the decoder) runs under activation checkpointing, so memory grows with one step, not with all.
A moment-matching penalty keeps the noise Gaussian-like (zero mean, unit variance per member), so the
optimised noise stays where the sampler was trained and its images stay on the prior's manifold. For latent
priors the prompt embedding can be optimised too (per member). Members are optimised independently (Adam is
per-coordinate) unless repulsion couples them.

With `stop_when_accepted`, a member whose image passes the objective's acceptance test keeps that image (its
first passing one, the unoptimised draw included) and leaves the optimisation: later iterations run the sampler
on the members that still fail only, so a member costs the denoiser passes it needed (its `steps`) and an easy
objective costs little more than rejection sampling. The acceptance test runs on the images each iteration
computes anyway (one classifier pass, no gradient).
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
        stop_when_accepted: bool = True,
    ) -> None:
        """`repulsion_features` maps images to (B, D) features, e.g. `preimage.engine.models.load_lpips(...).embed` for
        LPIPS; None means pixels pooled to 16 x 16. `stop_when_accepted` keeps each member's first image that
        passes and optimises only the members that have none."""
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
    ) -> tuple[Tensor, Tensor, Tensor]:
        timesteps = prior.timesteps(self.num_steps, self.strength)
        size = len(generators)
        # optimised in float32 even for a float16 prior: Adam's eps rounds to 0 in float16
        noise = prior.sample_noise(size, generators).float().requires_grad_(True)
        condition = self._initial_condition(prior, size)
        parameters = [noise] if condition is None else [noise, condition]
        optimizer = torch.optim.Adam(parameters, lr=self.lr)
        done = torch.zeros(size, dtype=torch.bool)  # members holding their first passing image
        calls = torch.zeros(size, dtype=torch.long)
        kept: Tensor | None = None
        last_loss = torch.zeros(size)
        trace = []
        for _ in range(self.iterations):
            active = (~done).nonzero().flatten()
            rows = active.to(noise.device)
            with torch.enable_grad():
                images = self._generate(prior, z_source, timesteps, noise[rows], _rows(condition, rows), True)
                objective_loss = objective.loss(images)
            calls[active] += len(timesteps)
            last_loss[active] = objective_loss.detach().float().cpu()
            trace.append(last_loss.clone())
            if kept is None:
                kept = torch.zeros_like(images.detach())
            if self.stop_when_accepted:
                with torch.no_grad():
                    passed = objective.accept(images.detach()).bool().cpu()
                kept[rows[passed.to(rows.device)]] = images.detach()[passed.to(images.device)]
                done[active[passed]] = True
                if done.all():
                    break
            with torch.enable_grad():
                total = (
                    objective_loss
                    + self.noise_weight * gaussian_penalty(noise[rows], prior.noise_offset)
                    + regularisers(images, source, self.distance_weight, self.repulsion_weight, self.repulsion_features)
                )
                optimizer.zero_grad(set_to_none=True)
                total.sum().backward()
            optimizer.step()
        remaining = (~done).nonzero().flatten()
        if len(remaining):
            rows = remaining.to(noise.device)
            with torch.no_grad():
                kept[rows] = self._generate(prior, z_source, timesteps, noise[rows], _rows(condition, rows), False)
            calls[remaining] += len(timesteps)
        trace += [trace[-1]] * (self.iterations - len(trace))  # a stopped batch keeps its members' last losses
        return kept, torch.stack(trace), calls

    def _check_editable(self) -> None:
        raise ValueError("edit: NoiseOptSampler optimises a shrinking subset of a batch's members, so it cannot "
                         "start each from its own source; edit with GuidedSampler or RejectionSampler")

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


def _rows(condition: Tensor | None, rows: Tensor) -> Tensor | None:
    """The optimised prompt embeddings of the members at `rows`, or None."""
    return None if condition is None else condition[rows]
