"""Rejection sampling: plain prior draws, kept iff the objective accepts them.

The baseline every guided method is compared against: its members are exact prior samples (conditioned on
acceptance), and its acceptance rate says how rare the invariant set is under the prior.
"""

from __future__ import annotations

import torch
from torch import Tensor

from preimage.engine.priors.base import DiffusionPrior
from preimage.engine.samplers.base import (
    ObjectiveLike,
    Sampler,
    check_float,
    check_int,
    start_latents,
)


class RejectionSampler(Sampler):
    """Draw from pure noise (strength 1) or from the source noised to `strength` (a late start), then filter.

    `sample(..., n, ...)` draws n members and reports all of them with their `accepted` flag, so the acceptance
    rate is known. With `stop_after_accepted=k`, n becomes a budget: batches stop once k members are accepted.
    """

    def __init__(
        self,
        num_steps: int = 25,
        strength: float = 1.0,
        batch_size: int = 64,
        eta: float = 0.0,
        stop_after_accepted: int | None = None,
    ) -> None:
        self.num_steps = check_int("num_steps", num_steps, 1)
        self.strength = check_float("strength", strength, 0.0, 1.0, low_open=True)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eta = check_float("eta", eta, 0.0)
        self.stop_after_accepted = (
            None if stop_after_accepted is None else check_int("stop_after_accepted", stop_after_accepted, 1)
        )

    def _enough(self, accepted: int) -> bool:
        return self.stop_after_accepted is not None and accepted >= self.stop_after_accepted

    @torch.no_grad()
    def _sample_batch(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        source: Tensor,
        z_source: Tensor,
        generators: list[torch.Generator],
    ) -> tuple[Tensor, None, int]:
        timesteps = prior.timesteps(self.num_steps, self.strength)
        noise = prior.sample_noise(len(generators), generators)
        z = start_latents(prior, z_source, timesteps[0], self.strength, noise)
        for t in timesteps:
            z = prior.step(z, t, eta=self.eta, generator=generators)
        return prior.decode(z), None, len(timesteps)
