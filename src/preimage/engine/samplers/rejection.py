"""Rejection sampling: plain prior draws, kept iff the objective accepts them.

The baseline every guided method is compared against: its members are exact prior samples (conditioned on
acceptance), and its acceptance rate says how rare the invariant set is under the prior.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from preimage.engine.priors.base import DiffusionPrior, check_solver
from preimage.engine.samplers.base import (
    ObjectiveLike,
    Sampler,
    SampleResult,
    check_float,
    check_generator,
    check_int,
    check_source,
    judge,
    start_latents,
)


class RejectionSampler(Sampler):
    """Draw from pure noise (strength 1) or from the source noised to `strength` (a late start), then filter.

    `sample(..., n, ...)` draws n members and reports all of them with their `accepted` flag, so the acceptance
    rate is known. With `stop_after_accepted=k`, n becomes a budget: batches stop once k members are accepted.
    `solver` walks the chain (`DiffusionPrior.solve`): "ddim", or the multistep solvers "dpmsolver++" and "unipc",
    which need about a half and a third of DDIM's steps for the same samples and are deterministic (eta 0).
    """

    def __init__(
        self,
        num_steps: int = 25,
        strength: float = 1.0,
        batch_size: int = 64,
        eta: float = 0.0,
        stop_after_accepted: int | None = None,
        solver: str = "ddim",
    ) -> None:
        self.num_steps = check_int("num_steps", num_steps, 1)
        self.strength = check_float("strength", strength, 0.0, 1.0, low_open=True)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.eta = check_float("eta", eta, 0.0)
        self.stop_after_accepted = (
            None if stop_after_accepted is None else check_int("stop_after_accepted", stop_after_accepted, 1)
        )
        self.solver = check_solver(solver, self.eta)

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
        z = prior.solve(z, timesteps, self.solver, self.eta, generators)
        return prior.decode(z), None, len(timesteps)


@dataclass(frozen=True)
class DrawPool:
    """Prior draws from pure noise made once, for every rejection set of a run to test.

    A draw from pure noise does not depend on the objective or the source, so the rejection sets of a run can
    share one pool (the pipeline's reference sample) instead of each drawing its own: a pooled set costs the
    objective's check alone. Rows are draws: images (N, 3, H, W) in [0, 1], each draw's seed, denoiser calls and
    the wall seconds it cost; `num_steps`, `eta` and `solver` are the chain's settings every draw was made with.
    """

    images: Tensor
    seeds: Tensor
    steps: Tensor
    seconds: Tensor
    num_steps: int
    eta: float
    solver: str

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1] != 3 or n == 0:
            raise ValueError(f"a draw pool needs images of shape (N, 3, H, W) with N >= 1, got {tuple(self.images.shape)}")
        for name in ("seeds", "steps", "seconds"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"a draw pool's {name} must have one entry per image ({n}), got {len(getattr(self, name))}")

    def __len__(self) -> int:
        return len(self.images)

    def serves(self, sampler: Sampler) -> bool:
        """Whether the pool's draws are draws `sampler` would make: a rejection sampler from pure noise with the
        pool's steps, eta and solver that draws all n members (no early stop)."""
        return (type(sampler) is RejectionSampler and sampler.strength == 1.0 and sampler.num_steps == self.num_steps
                and sampler.eta == self.eta and sampler.solver == self.solver and sampler.stop_after_accepted is None)


class PooledRejectionSampler:
    """Rejection sampling from a `DrawPool`: n of its draws, chosen without replacement by the caller's
    generator, each kept iff the objective accepts it.

    Equal in distribution to the `RejectionSampler` the pool serves (exact prior draws, filtered). A member's
    `seconds` is what its draw cost when the pool was made plus its share of the check, so rates stay comparable
    with samplers that draw. Different sets may share draws (about n^2 / N between two sets).
    """

    def __init__(self, pool: DrawPool, batch_size: int = 64) -> None:
        self.pool = pool
        self.batch_size = check_int("batch_size", batch_size, 1)

    def sample(
        self,
        prior: DiffusionPrior,
        objective: ObjectiveLike,
        source: Tensor,
        n: int,
        generator: torch.Generator,
    ) -> SampleResult:
        """n pool draws for `objective` (bound to `source`), each with its `accepted` flag."""
        check_int("n", n, 1)
        check_generator(generator)
        if n > len(self.pool):
            raise ValueError(f"a set of {n} members needs a pool of at least {n} draws, the pool has {len(self.pool)}")
        size = tuple(self.pool.images.shape[-2:])
        if size != (prior.image_size, prior.image_size):
            raise ValueError(f"the pool's images are {size[0]}x{size[1]}, the prior draws {prior.image_size}x"
                             f"{prior.image_size}")
        check_source(source, prior.image_size)
        chosen = torch.randperm(len(self.pool), generator=generator)[:n]
        parts = []
        for batch in chosen.split(self.batch_size):
            start = time.perf_counter()
            images = self.pool.images[batch].to(prior.device, torch.float32)
            loss, accepted = judge(objective, images)
            check = (time.perf_counter() - start) / len(batch)
            parts.append({"images": images, "accepted": accepted, "loss": loss,
                          "seconds": self.pool.seconds[batch].float() + check, "seeds": self.pool.seeds[batch],
                          "steps": self.pool.steps[batch], "trace": None})
        return Sampler._collect(parts)

    def describe(self) -> dict:
        """Described as the rejection sampler the pool serves, plus the pool's size."""
        return {"sampler": RejectionSampler.__name__, "num_steps": self.pool.num_steps, "strength": 1.0,
                "batch_size": self.batch_size, "eta": self.pool.eta, "stop_after_accepted": None,
                "solver": self.pool.solver, "pool": len(self.pool)}
