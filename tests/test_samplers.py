"""Samplers on tiny random priors with a toy objective: the mean red channel within a tolerance of a target."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from test_priors import PIXEL_SIZE, prior_with, save_latent_prior

from preimage.engine.models import load_lpips
from preimage.engine.priors import LatentDiffusionPrior, PixelDiffusionPrior
from preimage.engine.samplers import (
    DrawPool,
    GuidedSampler,
    NoiseOptSampler,
    PixelFeatures,
    PooledRejectionSampler,
    RejectionSampler,
    SampleResult,
    farthest_point_subset,
    pairwise_sq_distances,
    repulsion_loss,
)
from preimage.engine.samplers.noise_opt import gaussian_penalty

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)


def bare_guided(**settings) -> GuidedSampler:
    """A guided sampler without the world-tuned extras (guidance at every noise level, no restarts, fp32
    gradient), so a test sees exactly the mechanism it names; `settings` override."""
    return GuidedSampler(**({"guidance_interval": (0.0, 1.0), "restarts": 0, "gradient_dtype": "float32"} | settings))


class RedMean:
    """Toy objective: keep the mean red channel within `tolerance` of `target`."""

    def __init__(self, target: float, tolerance: float = 0.05) -> None:
        self.target, self.tolerance = target, tolerance

    def value(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0].mean((1, 2))

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        """In tolerance units, 1 at the acceptance boundary, as the library's objectives are."""
        return ((self.value(images) - self.target) / self.tolerance).pow(2)

    def accept(self, images: torch.Tensor) -> torch.Tensor:
        return (self.value(images) - self.target).abs() <= self.tolerance

    def describe(self) -> dict:
        return {"objective": "red_mean", "target": self.target, "tolerance": self.tolerance}


class Anything(RedMean):
    """Accepts every image; a zero loss that still depends on the images (for pure repulsion)."""

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1).sum(1) * 0

    def accept(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], dtype=torch.bool, device=images.device)


@pytest.fixture(scope="module")
def prior() -> PixelDiffusionPrior:
    return prior_with("v_prediction")


@pytest.fixture(scope="module")
def source() -> torch.Tensor:
    return torch.rand(1, 3, PIXEL_SIZE, PIXEL_SIZE, generator=torch.Generator().manual_seed(0))


def draw(sampler, prior, objective, source, n: int, seed: int = 0) -> SampleResult:
    return sampler.sample(prior, objective, source, n, torch.Generator().manual_seed(seed))


def check_result(result: SampleResult, n: int, size: int = PIXEL_SIZE) -> None:
    assert result.images.shape == (n, 3, size, size)
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert result.accepted.dtype == torch.bool and result.accepted.shape == (n,)
    assert result.loss.shape == result.seconds.shape == result.seeds.shape == (n,)
    assert (result.seconds > 0).all() and result.steps.shape == (n,) and (result.steps > 0).all()


SAMPLERS = {
    "rejection": lambda: RejectionSampler(num_steps=4, batch_size=2),
    "rejection_late": lambda: RejectionSampler(num_steps=4, strength=0.5, batch_size=2, eta=1.0),
    "guided": lambda: bare_guided(num_steps=3, guidance_scale=0.5, recurrence=2, distance_weight=0.1, batch_size=2),
    "noise_opt": lambda: NoiseOptSampler(num_steps=2, iterations=2, batch_size=2),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_return_seeded_images_in_range(name, prior, source) -> None:
    first = draw(SAMPLERS[name](), prior, RedMean(0.5), source, n=3)
    check_result(first, 3)
    again = draw(SAMPLERS[name](), prior, RedMean(0.5), source, n=3)
    torch.testing.assert_close(first.images, again.images)
    torch.testing.assert_close(first.seeds, again.seeds)
    other = draw(SAMPLERS[name](), prior, RedMean(0.5), source, n=3, seed=1)
    assert not torch.allclose(first.images, other.images)
    json.dumps(SAMPLERS[name]().describe())


def test_members_do_not_depend_on_batch_size(prior, source) -> None:
    one_batch = draw(RejectionSampler(num_steps=3, batch_size=4), prior, RedMean(0.5), source, n=4)
    small_batches = draw(RejectionSampler(num_steps=3, batch_size=1), prior, RedMean(0.5), source, n=4)
    torch.testing.assert_close(one_batch.images, small_batches.images, atol=1e-5, rtol=1e-5)


def test_late_start_depends_on_the_source_and_full_strength_does_not(prior, source) -> None:
    other_source = 1 - source
    for strength, depends in ((1.0, False), (0.5, True)):
        sampler = RejectionSampler(num_steps=4, strength=strength, batch_size=2)
        a = draw(sampler, prior, RedMean(0.5), source, n=2).images
        b = draw(sampler, prior, RedMean(0.5), other_source, n=2).images
        assert torch.allclose(a, b) is not depends


def test_rejection_reports_all_draws_and_can_stop_at_k_accepted(prior, source) -> None:
    everything = draw(RejectionSampler(num_steps=2, batch_size=2), prior, Anything(0.0), source, n=6)
    assert everything.acceptance_rate == 1.0 and len(everything.seeds) == 6
    early = draw(RejectionSampler(num_steps=2, batch_size=2, stop_after_accepted=3), prior, Anything(0.0), source, n=6)
    assert len(early.seeds) == 4
    torch.testing.assert_close(early.images, everything.images[:4])
    none = draw(RejectionSampler(num_steps=2, batch_size=2, stop_after_accepted=1), prior, RedMean(5.0), source, n=4)
    assert len(none.seeds) == 4 and none.acceptance_rate == 0.0


def pool_of(result: SampleResult, num_steps: int, eta: float = 0.0) -> DrawPool:
    return DrawPool(result.images.cpu(), result.seeds, result.steps, result.seconds, num_steps, eta, "ddim")


def test_a_pooled_set_tests_the_pools_draws_as_rejection_from_pure_noise_would(prior, source) -> None:
    drawn = draw(RejectionSampler(num_steps=3, batch_size=4), prior, Anything(0.0), source, n=8)
    pool = pool_of(drawn, num_steps=3)
    pooled = draw(PooledRejectionSampler(pool, batch_size=2), prior, RedMean(0.5), source, n=5, seed=3)
    check_result(pooled, 5)
    rows = [drawn.seeds.tolist().index(seed) for seed in pooled.seeds.tolist()]
    assert len(set(rows)) == 5  # without replacement
    torch.testing.assert_close(pooled.images, drawn.images[rows])
    assert pooled.accepted.tolist() == RedMean(0.5).accept(pooled.images).tolist()
    assert (pooled.seconds >= drawn.seconds[rows]).all() and (pooled.steps == 3).all()
    # each pooled member is the draw a rejection sampler makes from that member's seed
    own = RejectionSampler(num_steps=3, batch_size=4)._sample_batch(prior, RedMean(0.5), source, None,
                                                                   [torch.Generator().manual_seed(int(pooled.seeds[0]))])
    torch.testing.assert_close(own[0], pooled.images[:1], atol=1e-5, rtol=1e-5)
    again = draw(PooledRejectionSampler(pool, batch_size=5), prior, RedMean(0.5), source, n=5, seed=3)
    assert again.seeds.tolist() == pooled.seeds.tolist()
    other = draw(PooledRejectionSampler(pool), prior, RedMean(0.5), source, n=5, seed=4)
    assert other.seeds.tolist() != pooled.seeds.tolist()
    description = PooledRejectionSampler(pool).describe()
    assert description["sampler"] == "RejectionSampler" and description["pool"] == 8 and description["num_steps"] == 3


def test_a_pool_serves_only_the_rejection_sampler_that_would_draw_its_draws(prior, source) -> None:
    pool = pool_of(draw(RejectionSampler(num_steps=3), prior, Anything(0.0), source, n=2), num_steps=3)
    assert pool.serves(RejectionSampler(num_steps=3, batch_size=7))
    for other in (RejectionSampler(num_steps=4), RejectionSampler(num_steps=3, strength=0.5),
                  RejectionSampler(num_steps=3, eta=1.0), RejectionSampler(num_steps=3, stop_after_accepted=1),
                  RejectionSampler(num_steps=3, solver="dpmsolver++"), RejectionSampler(num_steps=3, solver="unipc"),
                  bare_guided(num_steps=3)):
        assert not pool.serves(other)
    with pytest.raises(ValueError, match="a set of 3 members needs a pool of at least 3 draws, the pool has 2"):
        draw(PooledRejectionSampler(pool), prior, RedMean(0.5), source, n=3)
    with pytest.raises(ValueError, match="one entry per image"):
        DrawPool(pool.images, pool.seeds[:1], pool.steps, pool.seconds, 3, 0.0, "ddim")


@pytest.mark.parametrize("solver", ["dpmsolver++", "unipc"])
def test_rejection_with_a_multistep_solver_draws_seeded_prior_samples_at_its_steps(prior, source, solver: str) -> None:
    sampler = RejectionSampler(num_steps=3, batch_size=2, solver=solver)
    drawn = draw(sampler, prior, RedMean(0.5), source, n=4)
    check_result(drawn, 4)
    assert (drawn.steps == 3).all() and sampler.describe()["solver"] == solver
    torch.testing.assert_close(draw(sampler, prior, RedMean(0.5), source, n=4).images, drawn.images)
    ddim = draw(RejectionSampler(num_steps=3, batch_size=2), prior, RedMean(0.5), source, n=4)
    assert drawn.seeds.tolist() == ddim.seeds.tolist() and not torch.equal(drawn.images, ddim.images)
    with pytest.raises(ValueError, match="deterministic; eta must be 0"):
        RejectionSampler(solver=solver, eta=0.5)
    with pytest.raises(ValueError, match=r"solver must be one of \['ddim', 'dpmsolver\+\+', 'unipc'\], got 'euler'"):
        RejectionSampler(solver="euler")


@pytest.mark.parametrize("through_denoiser", [False, True], ids=["tweedie-gradient", "through-denoiser"])
def test_guidance_lowers_the_loss(prior, source, through_denoiser: bool) -> None:
    objective = RedMean(0.9)
    unguided = draw(bare_guided(num_steps=6, guidance_scale=0.0, batch_size=4), prior, objective, source, n=4)
    sampler = bare_guided(num_steps=6, guidance_scale=0.3, batch_size=4, through_denoiser=through_denoiser)
    guided = draw(sampler, prior, objective, source, n=4)
    assert guided.loss.mean() < 0.1 * unguided.loss.mean()
    assert guided.acceptance_rate > unguided.acceptance_rate
    assert guided.trace.shape == (5, 4) and guided.steps.tolist() == [6] * 4  # every step but the final one is guided


def test_guidance_interval_guides_only_the_steps_inside_it(prior, source) -> None:
    objective = RedMean(0.9)
    timesteps = prior.timesteps(6)
    level = lambda t: int(t) / prior.scheduler.config.num_train_timesteps  # noqa: E731
    low_half = bare_guided(num_steps=6, guidance_scale=0.3, batch_size=4, guidance_interval=(0.0, 0.5))
    guided = draw(low_half, prior, objective, source, n=4)
    guided_steps = sum(level(t) <= 0.5 for t in timesteps[:-1])  # the final step is never guided
    assert guided.trace.shape == (guided_steps, 4) and guided.steps.tolist() == [6] * 4
    unguided = draw(bare_guided(num_steps=6, guidance_scale=0.0, batch_size=4), prior, objective, source, n=4)
    assert guided.loss.mean() < unguided.loss.mean()
    above_every_step = bare_guided(num_steps=6, guidance_scale=0.3, batch_size=4, guidance_interval=(0.9999, 1.0))
    skipped = draw(above_every_step, prior, objective, source, n=4)
    assert skipped.trace is None and skipped.steps.tolist() == [6] * 4
    torch.testing.assert_close(skipped.images, unguided.images)
    repelled = bare_guided(num_steps=6, guidance_scale=0.3, batch_size=4, guidance_interval=(0.9999, 1.0),
                             repulsion_weight=1.0)
    repelled_only = draw(repelled, prior, objective, source, n=4)  # repulsion acts outside the interval
    assert repelled_only.trace is None and not torch.allclose(repelled_only.images, unguided.images)
    assert GuidedSampler(guidance_interval=[0.0, 0.85]).describe()["guidance_interval"] == [0.0, 0.85]


def test_approach_steps_walk_the_plain_steps_before_the_first_guided_one_in_fewer_calls(prior, source) -> None:
    """A 10-step chain guided below noise level 0.55 starts with 5 plain steps (999 ... 599); 2 approach steps
    replace them, and the 5 guided ones and the final step run as before."""
    objective = RedMean(0.9)
    settings = {"num_steps": 10, "guidance_scale": 0.3, "batch_size": 4, "guidance_interval": (0.0, 0.55)}
    scheduled = draw(bare_guided(**settings), prior, objective, source, n=4)
    approached = draw(bare_guided(**settings, approach_steps=2), prior, objective, source, n=4)
    assert scheduled.steps.tolist() == [10] * 4 and approached.steps.tolist() == [7] * 4
    assert approached.trace.shape == scheduled.trace.shape == (4, 4)  # the guided steps 499 ... 199
    assert not torch.allclose(approached.images, scheduled.images)
    unguided = draw(bare_guided(**settings | {"guidance_scale": 0.0}, approach_steps=2), prior, objective, source, n=4)
    assert approached.loss.mean() < unguided.loss.mean()
    as_many = draw(bare_guided(**settings, approach_steps=5), prior, objective, source, n=4)
    torch.testing.assert_close(as_many.images, scheduled.images)  # no fewer steps to take: the schedule's own
    for unchanged in ({"strength": 0.5}, {"distance_weight": 0.1}):  # no plain step before the first guided one
        before = draw(bare_guided(**settings, **unchanged), prior, objective, source, n=4)
        after = draw(bare_guided(**settings, **unchanged, approach_steps=1), prior, objective, source, n=4)
        torch.testing.assert_close(after.images, before.images)
        assert after.steps.tolist() == before.steps.tolist()
    with pytest.raises(ValueError, match="approach_steps must be an int >= 1, got 0"):
        GuidedSampler(approach_steps=0)


class AutocastSpy(RedMean):
    """RedMean that records whether CPU autocast was on, and in which dtype, when each method ran."""

    def __init__(self, target: float) -> None:
        super().__init__(target)
        self.seen: dict[str, set] = {"loss": set(), "accept": set()}

    def _record(self, method: str) -> None:
        enabled = torch.is_autocast_enabled("cpu")
        self.seen[method].add(torch.get_autocast_dtype("cpu") if enabled else torch.float32)

    def loss(self, images: torch.Tensor) -> torch.Tensor:
        self._record("loss")
        return super().loss(images)

    def accept(self, images: torch.Tensor) -> torch.Tensor:
        self._record("accept")
        return super().accept(images)


def test_gradient_dtype_autocasts_only_the_guidance_gradient(prior, source, monkeypatch) -> None:
    unguided = draw(bare_guided(num_steps=6, guidance_scale=0.0, batch_size=4), prior, RedMean(0.9), source, n=4)
    spy = AutocastSpy(0.9)
    sampler = bare_guided(num_steps=6, guidance_scale=0.3, batch_size=4, restarts=1, gradient_dtype="bfloat16")
    guided = draw(sampler, prior, spy, source, n=4)
    assert guided.loss.mean() < 0.1 * unguided.loss.mean() and guided.trace.dtype == torch.float32
    assert spy.seen == {"loss": {torch.bfloat16, torch.float32}, "accept": {torch.float32}}  # final checks: fp32
    for native in (True, False):  # auto: bfloat16 only where the device computes it natively
        monkeypatch.setattr("preimage.utils.devices.native_bfloat16", lambda device, native=native: native)
        spy = AutocastSpy(0.9)
        draw(bare_guided(num_steps=3, guidance_scale=0.3, batch_size=4, gradient_dtype="auto"), prior, spy, source, n=2)
        assert (torch.bfloat16 in spy.seen["loss"]) is native and spy.seen["accept"] == {torch.float32}
    with pytest.raises(ValueError, match="gradient_dtype: 'half'; expected 'auto' or one of"):
        GuidedSampler(gradient_dtype="half")


def test_the_final_step_is_a_plain_prior_step(prior, source) -> None:
    """A one-step chain is only its final step: no objective, distance or repulsion may move its output."""
    unguided = draw(bare_guided(num_steps=1, guidance_scale=0.0, batch_size=4), prior, RedMean(0.9), source, n=4)
    steered = bare_guided(num_steps=1, guidance_scale=0.3, batch_size=4, distance_weight=1.0, repulsion_weight=1.0)
    result = draw(steered, prior, RedMean(0.9), source, n=4)
    assert result.trace is None and result.steps.tolist() == [1] * 4
    torch.testing.assert_close(result.images, unguided.images)


def test_restarts_retry_only_the_failed_members(prior, source) -> None:
    """Unguided, a restart below noise level 0.9 redraws most of a 6-step chain: a fresh chance to pass."""
    plain = draw(bare_guided(num_steps=6, guidance_scale=0.0, batch_size=4), prior, RedMean(0.5), source, n=16)
    red = plain.images[:, 0].mean((1, 2))
    objective = RedMean(float(red.median()), float((red - red.median()).abs().median()))  # about half pass
    first = draw(bare_guided(num_steps=6, guidance_scale=0.0, batch_size=4), prior, objective, source, n=16)
    retried = bare_guided(num_steps=6, guidance_scale=0.0, batch_size=4, restarts=1, restart_level=0.9)
    result = draw(retried, prior, objective, source, n=16)
    assert 0 < first.acceptance_rate < 1 and result.acceptance_rate > first.acceptance_rate
    torch.testing.assert_close(result.images[first.accepted], first.images[first.accepted])  # passed: untouched
    still_failing = ~result.accepted
    assert still_failing.any()
    torch.testing.assert_close(result.images[still_failing], first.images[still_failing])  # no try passed: kept
    tail = 5  # the steps at noise levels <= 0.9 of a 6-step chain: a try's denoiser calls
    assert (result.steps[first.accepted] == 6).all() and (result.steps[~first.accepted] == 6 + tail).all()
    coarse = draw(bare_guided(num_steps=2, restarts=1, restart_level=0.1), prior, objective, source, n=2)
    assert (coarse.steps == 2).all()  # no step at or below the restart level: no tail to retry


def test_noise_optimisation_lowers_the_loss(prior, source) -> None:
    sampler = NoiseOptSampler(num_steps=2, iterations=15, lr=0.1, noise_weight=0.1, batch_size=2)
    result = draw(sampler, prior, RedMean(0.9), source, n=2)
    assert result.trace.shape == (15, 2)
    assert (result.trace[-1] < 0.5 * result.trace[0]).all()
    assert result.loss.mean() < 0.5 * result.trace[0].mean()


def test_noise_optimisation_can_stop_a_member_at_its_first_passing_image(prior, source) -> None:
    """Everything passes at once: each member keeps its unoptimised draw after one pass of the sampler; a member
    that never passes is optimised for every iteration, as without stopping."""
    plain = NoiseOptSampler(num_steps=2, iterations=3, batch_size=2, stop_when_accepted=False)
    stopping = NoiseOptSampler(num_steps=2, iterations=3, batch_size=2)  # stops by default
    easy = draw(stopping, prior, Anything(0.0), source, n=2)
    unoptimised = draw(NoiseOptSampler(num_steps=2, iterations=1, lr=1e-12, batch_size=2, stop_when_accepted=False),
                       prior, Anything(0.0), source, n=2)
    torch.testing.assert_close(easy.images, unoptimised.images)
    assert (easy.steps == 2).all() and easy.trace.shape == (3, 2) and easy.accepted.all()
    impossible = RedMean(5.0)  # a red mean of 5 is out of reach of images in [0, 1]
    torch.testing.assert_close(draw(stopping, prior, impossible, source, n=2).images,
                               draw(plain, prior, impossible, source, n=2).images)
    assert (draw(stopping, prior, impossible, source, n=2).steps == 4 * 2).all()


class FirstHalf(RedMean):
    """Accepts the images whose mean red is below the median of the first batch it sees: some members pass at once,
    the others only once the optimisation has lowered their red (the threshold stays)."""

    threshold: float | None = None

    def accept(self, images: torch.Tensor) -> torch.Tensor:
        if self.threshold is None:
            self.threshold = float(self.value(images).median())
        return self.value(images) < self.threshold


def test_a_stopped_member_keeps_its_first_image_and_costs_only_its_passes(prior, source) -> None:
    objective = FirstHalf(0.0)
    result = draw(NoiseOptSampler(num_steps=2, iterations=3, batch_size=4), prior, objective, source, n=4)
    passed = result.steps == 2  # accepted on the unoptimised draw: one pass of the 2-step sampler
    assert passed.any() and (~passed).any()
    # the others: a pass per iteration until they pass, at most 3 iterations and the final pass
    assert ((result.steps % 2 == 0) & (result.steps <= 4 * 2)).all()
    assert result.accepted[result.steps < 4 * 2].all()
    unoptimised = draw(NoiseOptSampler(num_steps=2, iterations=1, lr=1e-12, batch_size=4, stop_when_accepted=False),
                       prior, FirstHalf(0.0), source, n=4)
    torch.testing.assert_close(result.images[passed], unoptimised.images[passed])
    assert result.accepted[passed].all()


def test_noise_penalty_measures_noise_against_the_priors_own_offset() -> None:
    generator = torch.Generator().manual_seed(0)
    white = torch.randn(64, 3, 32, 32, generator=generator)
    shifted = white + 0.2 * torch.randn(64, 3, 1, 1, generator=generator)
    assert gaussian_penalty(white).mean() < 0.01
    assert gaussian_penalty(shifted, offset=0.2).mean() < 0.01  # typical draws of the prior cost little ...
    assert gaussian_penalty(shifted).mean() > 0.03  # ... but a white-noise penalty pulls them back to grey
    assert gaussian_penalty(white * 2).mean() > 1  # too much variance around the channel means


def test_repulsion_spreads_the_batch(prior, source) -> None:
    features = PixelFeatures(size=8)

    def spread(weight: float) -> float:
        sampler = bare_guided(num_steps=4, guidance_scale=1.0, repulsion_weight=weight, repulsion_features=features)
        images = draw(sampler, prior, Anything(0.0), source, n=4).images
        return float(pairwise_sq_distances(features(images)).mean())

    assert spread(1.0) > 1.2 * spread(0.0)


def test_pairwise_sq_distances_match_the_direct_differences_with_finite_gradients() -> None:
    points = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    points[3] = points[1]  # a duplicate pair: distance 0, where a square root's gradient would be NaN
    points.requires_grad_(True)
    distances = pairwise_sq_distances(points)
    direct = (points[:, None, :] - points[None, :, :]).pow(2).sum(-1)
    torch.testing.assert_close(distances, direct, rtol=1e-5, atol=1e-5)
    assert distances.diagonal().eq(0).all() and distances[1, 3] >= 0
    (gradient,) = torch.autograd.grad(repulsion_loss(points).sum(), points)
    assert torch.isfinite(gradient).all()


def test_repulsion_loss_descent_moves_points_apart() -> None:
    points = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)) * 0.1
    start = pairwise_sq_distances(points).sum()
    points.requires_grad_(True)
    optimizer = torch.optim.SGD([points], lr=0.05)
    for _ in range(20):
        optimizer.zero_grad()
        repulsion_loss(points).sum().backward()
        optimizer.step()
    assert pairwise_sq_distances(points.detach()).sum() > 2 * start
    assert repulsion_loss(torch.zeros(1, 2)).tolist() == [0.0]


def test_farthest_point_subset_picks_the_spread_out_points() -> None:
    cluster = torch.randn(6, 2, generator=torch.Generator().manual_seed(0)) * 0.01
    corners = torch.tensor([[10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    features = torch.cat([cluster, corners])
    assert farthest_point_subset(features, 4, first=0).tolist()[0] == 0
    assert set(farthest_point_subset(features, 4, first=0).tolist()[1:]) == {6, 7, 8}
    assert farthest_point_subset(features, 2, first=6).tolist() == [6, 7]
    assert len(set(farthest_point_subset(torch.zeros(3, 2), 3).tolist())) == 3
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_subset(features, 10)


def test_lpips_embeddings_serve_as_a_repulsion_feature_space(prior, source) -> None:
    metric = load_lpips("alex", allow_random=True)
    sampler = bare_guided(num_steps=2, guidance_scale=0.5, repulsion_weight=1.0, repulsion_features=metric.embed)
    result = draw(sampler, prior, Anything(0.0), source, n=3)
    check_result(result, 3)
    assert sampler.describe()["repulsion_features"] == "Lpips.embed"
    embedded = metric.embed(result.images)
    expected = metric(result.images[:1].expand(2, -1, -1, -1), result.images[1:])
    torch.testing.assert_close(pairwise_sq_distances(embedded)[0, 1:], expected, rtol=1e-4, atol=1e-6)


def test_parameters_are_validated(prior, source) -> None:
    with pytest.raises(ValueError, match="num_steps"):
        bare_guided(num_steps=0)
    with pytest.raises(ValueError, match="strength"):
        RejectionSampler(strength=1.5)
    with pytest.raises(ValueError, match="guidance_scale"):
        GuidedSampler(guidance_scale=-1.0)
    with pytest.raises(ValueError, match=r"guidance_interval must have low < high"):
        GuidedSampler(guidance_interval=(0.8, 0.2))
    with pytest.raises(ValueError, match=r"guidance_interval\[1\] must be in \[0.0, 1.0\]"):
        GuidedSampler(guidance_interval=(0.0, 1.5))
    with pytest.raises(ValueError, match="pair"):
        GuidedSampler(guidance_interval=0.5)
    with pytest.raises(ValueError, match="restarts must be an int >= 0"):
        GuidedSampler(restarts=-1)
    with pytest.raises(ValueError, match=r"restart_level must be in \(0.0, 1.0\]"):
        GuidedSampler(restart_level=0.0)
    with pytest.raises(ValueError, match="repulsion_features"):
        NoiseOptSampler(repulsion_features="lpips")
    with pytest.raises(ValueError, match="lr"):
        NoiseOptSampler(lr=0.0)
    with pytest.raises(ValueError, match="source"):
        draw(RejectionSampler(num_steps=2), prior, RedMean(0.5), source[..., :8], n=1)
    with pytest.raises(ValueError, match="generator"):
        RejectionSampler(num_steps=2).sample(prior, RedMean(0.5), source, 1, generator=0)
    with pytest.raises(ValueError, match="n must"):
        draw(RejectionSampler(num_steps=2), prior, RedMean(0.5), source, n=0)
    with pytest.raises(ValueError, match="conditional prior"):
        draw(NoiseOptSampler(num_steps=2, iterations=1, optimize_condition=True), prior, RedMean(0.5), source, n=1)


def test_two_step_latent_diffusion_sets_run_offline(tmp_path: Path) -> None:
    prior = LatentDiffusionPrior.from_pretrained(save_latent_prior(tmp_path), prompt="a red square")
    source = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    samplers = (
        RejectionSampler(num_steps=2, batch_size=2),
        bare_guided(num_steps=2, guidance_scale=0.5, strength=0.5, distance_weight=1.0, repulsion_weight=0.5),
        NoiseOptSampler(num_steps=2, iterations=2, optimize_condition=True),
    )
    for sampler in samplers:
        result = draw(sampler, prior, RedMean(0.5), source, n=2)
        check_result(result, 2, size=16)
