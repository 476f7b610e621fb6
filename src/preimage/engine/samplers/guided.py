"""Gradient-guided DDIM sampling on the Tweedie estimate (DPS / DiME / DVCE style).

At each step t the denoiser's clean estimate z0_hat(z_t) is decoded and scored, and the gradient g of that
score moves the DDIM update:

    z_{t-1} = DDIM(z_t) - guidance_scale * sqrt(1 - alpha_bar_t) * w * g / rms(g),   w = min(1, loss)

- g is taken with respect to the Tweedie estimate z0_hat (MPGD, He et al. 2023), or with `through_denoiser`
  with respect to z_t through the denoiser (DPS, DiME), which costs a backward pass through the denoiser.
- The gradient is normalised per member to unit root-mean-square, so guidance_scale does not depend on the
  loss's units (a logit margin and a pixel mean guide alike); DVCE normalises its gradient for the same reason.
- The step shrinks with the objective's loss below 1: objectives scale their loss to about 1 at the
  acceptance boundary, so a member that already satisfies its objective is nudged, not pushed, and keeps the
  look the prior gave it. With a distance or repulsion term the step stays whole, since those keep pulling
  after the objective is met.
- The step is scaled by the current noise level sqrt(1 - alpha_bar_t): guidance acts while the image's layout is
  still being decided and fades as the sample is resolved, so the last steps cannot add an adversarial,
  imperceptible perturbation that satisfies the objective without changing the image.
- The score is objective.loss + distance_weight * L1(image, source) (DVCE's closeness regulariser, for
  counterfactuals and late starts) + repulsion_weight * RBF similarity to the other batch members in a feature
  space (particle-guidance style diversity, Cohen et al. 2024). Repulsion acts within a batch only.
- recurrence > 1 repeats each step: re-noise z_{t-1} back to t with fresh noise and step again (universal
  guidance's self-recurrence), giving the guidance more iterations at the same noise level.
- `guidance_interval = (low, high)` guides only the steps whose noise level t / T lies in [low, high]
  (Kynkaenniemi et al. 2024 limit classifier-free guidance to an interval the same way); the other steps cost
  what an unguided one does, or keep only the distance and repulsion terms, which act at every step. At the
  noisiest steps a classifier reads a blurry Tweedie estimate and can ask for its shortcut rather than the
  object.
- `approach_steps` takes the plain steps from pure noise down to the first guided step in fewer, longer DDIM
  steps: no guidance acts there, so fewer denoiser calls reach the same noise level, and the guided steps, the
  guidance's iterations, stay as they are (on the world's prior one step instead of four keeps each acceptance
  within half a point or raises it).
- The final step, onto the clean end of the chain, is always a plain DDIM step: its shift would land on the
  output itself with no prior step after it to absorb it, a raw pixel perturbation rather than a guided sample.
- `restarts` > 0 gives a member whose final image fails the acceptance test more tries at the end of the
  chain: its clean z is noised again, with fresh noise from its own generator, to the first step at or below
  noise level `restart_level`, and the chain's tail is run again, guided as before (restart sampling, Xu et al.
  2023, for the members that need it). The first try whose image passes replaces the member; a member whose
  tries all fail keeps its first image. Only the first pass is in the loss trace; a member's steps and seconds
  include its tries. A chain with no step at or below `restart_level` (a few-step sampler) makes no restarts.
- `cone` (a `preimage.engine.samplers.cone.Cone`) projects the objective's gradient onto a cone of a given
  half-angle around the gradient of the same objective read from an adversarially robust model, as DVCE does
  (Augustin et al. 2022): where the two gradients differ by more than the angle, the objective's gradient is
  replaced by the closest vector of the cone, so the guidance follows only directions the robust model also
  finds meaningful rather than the explained model's adversarial ones. The projection is per member, on the
  gradients with respect to the guided variable, before the distance and repulsion terms are added; it costs a
  forward and backward pass of the robust model per guided step.
- `gradient_dtype` runs the decode, the objective and the regularisers of the guidance gradient under autocast
  ("auto": bfloat16 where the device computes it natively, see `preimage.utils.devices`). The gradient only sets
  a direction, normalised per member, so bfloat16 rounding barely moves it; every acceptance test (restarts,
  final images) still runs in full precision.

The measurements behind these choices are in docs/samplers.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from preimage.engine.priors.base import DiffusionPrior
from preimage.engine.samplers.base import (
    ObjectiveLike,
    Sampler,
    check_features,
    check_float,
    check_int,
    check_interval,
    per_member_unit_rms,
    regularisers,
    start_latents,
)
from preimage.engine.samplers.cone import Cone
from preimage.engine.samplers.diversity import FeatureSpace
from preimage.utils.devices import autocast, check_dtype_name, resolve_dtype


class GuidedSampler(Sampler):
    """DDIM sampling steered by the gradient of the objective's loss on the decoded Tweedie estimate."""

    def __init__(
        self,
        num_steps: int = 25,
        guidance_scale: float = 0.08,
        strength: float = 1.0,
        distance_weight: float = 0.0,
        recurrence: int = 1,
        repulsion_weight: float = 0.0,
        repulsion_features: FeatureSpace | None = None,
        batch_size: int = 64,
        eta: float = 0.0,
        through_denoiser: bool = False,
        guidance_interval: tuple[float, float] | list[float] = (0.0, 0.85),
        restarts: int = 2,
        restart_level: float = 0.3,
        gradient_dtype: str = "auto",
        cone: Cone | None = None,
        approach_steps: int | None = None,
    ) -> None:
        """The defaults are the settings tuned on the shortcut world (docs/samplers.md): guidance
        only below noise level 0.85, where the Tweedie estimate is sharp enough for the classifier's gradient,
        and up to 2 restarts of the chain's tail for members that fail. `repulsion_features` maps images to
        (B, D) features, e.g. `preimage.engine.models.load_lpips(...).embed` for LPIPS; None means pixels pooled
        to 16 x 16. The loss trace has one row per guided step (the final step is never guided).
        `gradient_dtype` ("auto", "float32", "bfloat16", "float16") is the autocast dtype of the guidance
        gradient only; "auto" is bfloat16 where the device computes it natively. `cone` keeps the objective's
        gradient within a cone around a robust model's gradient (DVCE); None guides with the gradient as it is.
        `approach_steps` walks the plain steps from the chain's start down to its first guided step in that many
        deterministic DDIM steps when the schedule has more (None: the schedule's own)."""
        self.num_steps = check_int("num_steps", num_steps, 1)
        self.guidance_scale = check_float("guidance_scale", guidance_scale, 0.0)
        self.strength = check_float("strength", strength, 0.0, 1.0, low_open=True)
        self.distance_weight = check_float("distance_weight", distance_weight, 0.0)
        self.recurrence = check_int("recurrence", recurrence, 1)
        self.repulsion_weight = check_float("repulsion_weight", repulsion_weight, 0.0)
        self.repulsion_features = check_features(repulsion_features)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eta = check_float("eta", eta, 0.0)
        if not isinstance(through_denoiser, bool):
            raise ValueError(f"through_denoiser must be a bool, got {through_denoiser!r}")
        self.through_denoiser = through_denoiser
        self.guidance_interval = check_interval("guidance_interval", guidance_interval)
        self.restarts = check_int("restarts", restarts, 0)
        self.restart_level = check_float("restart_level", restart_level, 0.0, 1.0, low_open=True)
        self.gradient_dtype = check_dtype_name("gradient_dtype", gradient_dtype)
        if cone is not None and not isinstance(cone, Cone):
            raise ValueError(f"cone must be a preimage.engine.samplers.cone.Cone or None, got {cone!r}")
        self.cone = cone
        self.approach_steps = None if approach_steps is None else check_int("approach_steps", approach_steps, 1)

    def _check_editable(self) -> None:
        if self.restarts:
            raise ValueError(f"edit: restarts={self.restarts} retries a subset of a batch's members, whose per-source "
                             "targets and sources the batch cannot split; edit with restarts=0")

    @property
    def _regularised(self) -> bool:
        return self.distance_weight > 0 or self.repulsion_weight > 0

    def _sample_batch(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        source: Tensor,
        z_source: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        timesteps = prior.timesteps(self.num_steps, self.strength)
        noise = prior.sample_noise(len(generators), generators)
        z = start_latents(prior, z_source, timesteps[0], self.strength, noise)
        guide = Guide(objective, self.cone.reference(objective) if self.cone else None)
        z, timesteps, approach_calls = self._approach(prior, z, timesteps)
        z, trace, chain_calls = self._run_chain(prior, guide, source, z, timesteps, generators)
        calls = torch.full((len(generators),), approach_calls + chain_calls, dtype=torch.long)
        if self.restarts:
            z, tries_calls = self._restart_failures(prior, guide, source, z, timesteps, generators)
            calls += tries_calls
        with torch.no_grad():
            images = prior.decode(z)
        return images, torch.stack(trace) if trace else None, calls

    def _approach(self, prior: DiffusionPrior, z: Tensor, timesteps: Tensor) -> tuple[Tensor, Tensor, int]:
        """Walk z from the chain's start to its first guided step in `approach_steps` DDIM steps, evenly spaced in
        t, when the schedule has more plain steps before it; also the rest of the chain and the denoiser calls.
        With a distance or repulsion term no step is plain, so the chain stays as it is."""
        guided = [index for index, t in enumerate(timesteps[:-1]) if self._guides(prior, t)]
        if self.approach_steps is None or self._regularised or not guided or guided[0] <= self.approach_steps:
            return z, timesteps, 0
        first = guided[0]
        stops = torch.linspace(float(timesteps[0]), float(timesteps[first]), self.approach_steps + 1).round().long()
        with torch.no_grad():
            for t, s in zip(stops[:-1], stops[1:]):
                z = prior.step_to(z, t, s)
        return z, timesteps[first:], self.approach_steps

    def _run_chain(
        self,
        prior: DiffusionPrior,
        guide: Guide,
        source: Tensor,
        z: Tensor,
        timesteps: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, list[Tensor], int]:
        """Walk z down `timesteps` to the clean end; also the objective loss per guided step, and the calls."""
        trace, calls = [], 0
        for index, t in enumerate(timesteps):
            final = index == len(timesteps) - 1
            guides = not final and self._guides(prior, t)
            if final or not (guides or self._regularised):
                with torch.no_grad():
                    z = prior.step(z, t, eta=self.eta, generator=generators)
                calls += 1
                continue
            repeats = self.recurrence if guides else 1
            calls += repeats
            for repeat in range(repeats):
                z_prev, loss = self._guided_step(prior, guide if guides else None, source, z, t, generators)
                if repeat < repeats - 1:
                    fresh = prior.sample_noise(len(generators), generators)
                    z = prior.renoise(z_prev, prior.previous_timestep(t), t, fresh)
            if loss is not None:
                trace.append(loss)
            z = z_prev
        return z, trace, calls

    def _restart_failures(
        self,
        prior: DiffusionPrior,
        guide: Guide,
        source: Tensor,
        z: Tensor,
        timesteps: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, Tensor]:
        """Give each member whose final image fails up to `restarts` tries of the chain's tail below
        `restart_level`, each from its first-pass z; the first try that passes replaces it. Also returns each
        member's denoiser calls in its tries. A chain with no step at or below `restart_level` (a few-step
        sampler) has no tail to retry, and its members are kept as they are."""
        total = prior.scheduler.config.num_train_timesteps
        tail = timesteps[timesteps / total <= self.restart_level]
        calls = torch.zeros(len(z), dtype=torch.long)
        if len(tail) == 0:
            return z, calls
        z = z.clone()
        failed = ~self._accepts(prior, guide.objective, z)
        for _ in range(self.restarts):
            members = failed.nonzero().flatten().tolist()
            if not members:
                break
            own = [generators[i] for i in members]
            with torch.no_grad():
                restarted = prior.noise_to(z[members], tail[0], prior.sample_noise(len(own), own))
            tried, _, tail_calls = self._run_chain(prior, guide, source, restarted, tail, own)
            calls[members] += tail_calls
            passed = [j for j, ok in enumerate(self._accepts(prior, guide.objective, tried).tolist()) if ok]
            kept = [members[j] for j in passed]
            z[kept] = tried[passed]
            failed[kept] = False
        return z, calls

    @staticmethod
    def _accepts(prior: DiffusionPrior, objective: ObjectiveLike, z: Tensor) -> Tensor:
        with torch.no_grad():
            return objective.accept(prior.decode(z)).bool().cpu()

    def _guides(self, prior: DiffusionPrior, t: Tensor) -> bool:
        low, high = self.guidance_interval
        return low <= int(t) / prior.scheduler.config.num_train_timesteps <= high

    def _guided_step(
        self,
        prior: DiffusionPrior,
        guide: Guide | None,
        source: Tensor,
        z_t: Tensor,
        t: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, Tensor | None]:
        """One guided DDIM step; also returns the objective loss of the Tweedie estimate at t.

        Without a guide (outside the guidance interval) only the distance and repulsion terms steer.
        """
        z_t = z_t.detach().requires_grad_(self.through_denoiser)
        with torch.set_grad_enabled(self.through_denoiser):
            output = prior.predict(z_t, t)
            z0 = prior.tweedie(z_t, t, output)
        leaf = z_t if self.through_denoiser else z0.detach().requires_grad_(True)
        dtype = resolve_dtype("gradient_dtype", self.gradient_dtype, prior.device)
        with torch.enable_grad(), autocast(prior.device, dtype):
            images = prior.decode(z0 if self.through_denoiser else leaf)
            extra = regularisers(images, source, self.distance_weight, self.repulsion_weight, self.repulsion_features)
            objective_loss = None if guide is None else guide.objective.loss(images).float()
            gradient = self._gradient(images, leaf, extra, objective_loss, guide)
        with torch.no_grad():
            z_prev = prior.step(z_t.detach(), t, output.detach(), eta=self.eta, generator=generators)
            weight = torch.ones_like(extra) if self._regularised else objective_loss.clamp(max=1.0)
            weight = weight.detach().float().view(-1, *[1] * (z_t.ndim - 1))
            shift = self.guidance_scale * (1 - prior.alpha_bar(t)).sqrt() * weight * per_member_unit_rms(gradient)
            return (z_prev - shift.to(z_prev.dtype)), None if objective_loss is None else objective_loss.detach()

    def _gradient(self, images: Tensor, leaf: Tensor, extra: Tensor, objective_loss: Tensor | None,
                  guide: Guide | None) -> Tensor:
        """The gradient of objective loss plus regularisers with respect to `leaf`; with a cone, the objective's
        part is first projected around the gradient of the robust model's twin of the objective."""
        if objective_loss is None or guide.reference is None:
            total = extra if objective_loss is None else extra + objective_loss
            return torch.autograd.grad(total.sum(), leaf)[0]
        (gradient,) = torch.autograd.grad(objective_loss.sum(), leaf, retain_graph=True)
        robust_loss = guide.reference.loss(images).float()
        (robust_gradient,) = torch.autograd.grad(robust_loss.sum(), leaf, retain_graph=self._regularised)
        gradient = self.cone.project(gradient, robust_gradient)
        if self._regularised:
            gradient = gradient + torch.autograd.grad(extra.sum(), leaf)[0]
        return gradient


@dataclass(frozen=True)
class Guide:
    """What a guided step steers by: the objective, and its robust model's twin where the sampler has a cone."""

    objective: ObjectiveLike
    reference: ObjectiveLike | None = None
