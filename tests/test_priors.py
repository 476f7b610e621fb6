"""Diffusion priors on tiny randomly initialised models saved to and loaded from disk, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from preimage.engine.priors import (
    DiffusionPrior,
    LatentDiffusionPrior,
    PixelDiffusionPrior,
)
from preimage.engine.priors.base import SOLVERS, ddim_from_config

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)

PIXEL_SIZE = 16
PROMPT_LENGTH = 8


def tiny_unet(seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=PIXEL_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def save_pixel_prior(path: Path, prediction_type: str = "v_prediction") -> Path:
    """A pixel prior laid out as training saves it: DDPM scheduler config beside the unet."""
    tiny_unet().save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type).save_pretrained(path / "scheduler")
    return path


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP BPE tokenizer built in memory, no hub."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in "abcdefghijklmnopqrstuvwxyz":
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=PROMPT_LENGTH)


def save_latent_prior(path: Path) -> Path:
    """A tiny Stable-Diffusion-layout directory, written by StableDiffusionPipeline.save_pretrained."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer.get_vocab()),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=PROMPT_LENGTH,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=16,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        latent_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=16,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pixel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pixel_prior(tmp_path_factory.mktemp("pixel"))


@pytest.fixture(scope="module")
def latent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_latent_prior(tmp_path_factory.mktemp("latent"))


def prior_with(prediction_type: str) -> PixelDiffusionPrior:
    config = DDPMScheduler(prediction_type=prediction_type).config
    return PixelDiffusionPrior(tiny_unet(), ddim_from_config(config, "trailing"))


def test_pixel_prior_loads_offline_and_round_trips(pixel_dir: Path) -> None:
    prior = PixelDiffusionPrior.from_pretrained(pixel_dir)
    assert isinstance(prior, DiffusionPrior)
    assert prior.prediction_type == "v_prediction"
    assert isinstance(prior.scheduler, DDIMScheduler)
    assert prior.image_size == PIXEL_SIZE and prior.latent_shape == (3, PIXEL_SIZE, PIXEL_SIZE)
    images = torch.rand(2, 3, PIXEL_SIZE, PIXEL_SIZE)
    z = prior.encode(images)
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.9
    torch.testing.assert_close(prior.decode(z), images)
    assert prior.predict(z, 500).shape == z.shape
    assert prior.to("cpu") is prior and prior.device.type == "cpu"
    assert (prior.device, prior.dtype) == (prior.unet.device, prior.unet.dtype)  # read without diffusers' module walk
    assert prior.describe()["timestep_spacing"] == "trailing"


def test_pixel_prior_runs_its_unet_in_bfloat16_and_keeps_float32_states(pixel_dir: Path) -> None:
    full = PixelDiffusionPrior.from_pretrained(pixel_dir)
    mixed = PixelDiffusionPrior.from_pretrained(pixel_dir, dtype=torch.bfloat16)
    z = torch.randn(2, *full.latent_shape, generator=torch.Generator().manual_seed(0))
    prediction = mixed.predict(z, 500)
    assert mixed.unet.dtype == torch.float32 and prediction.dtype == torch.float32
    assert not torch.equal(prediction, full.predict(z, 500))  # rounded in bfloat16 ...
    torch.testing.assert_close(prediction, full.predict(z, 500), atol=0.05, rtol=0.05)  # ... but the same function


def test_pixel_prior_runs_its_unet_on_a_cpu_in_chunks_with_the_outputs_of_one_call() -> None:
    prior = prior_with("epsilon")
    assert prior.cpu_chunk == 2**20 // (8 * PIXEL_SIZE**2)  # the first level's activations of a chunk: 4 MiB
    prior.cpu_chunk = 3
    calls = []
    prior.unet.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    z = torch.randn(7, *prior.latent_shape, generator=torch.Generator().manual_seed(0))
    chunked = prior.predict(z, 500)
    assert calls == [3, 2, 2]  # the fewest chunks within cpu_chunk, as even as they come
    with torch.no_grad():
        torch.testing.assert_close(chunked, prior.unet(z, 500).sample)


def test_pixel_prior_refuses_pickled_weights(tmp_path: Path) -> None:
    tiny_unet().save_pretrained(tmp_path / "unet", safe_serialization=False)
    DDPMScheduler().save_pretrained(tmp_path / "scheduler")
    with pytest.raises(OSError):
        PixelDiffusionPrior.from_pretrained(tmp_path)


def test_timesteps_trailing_and_late_start() -> None:
    prior = prior_with("epsilon")
    assert prior.timesteps(4).tolist() == [999, 749, 499, 249]
    full = prior.timesteps(10)
    late = prior.timesteps(10, strength=0.3)
    assert late.tolist() == full[-3:].tolist()
    assert prior.previous_timestep(late[-1]) < 0
    assert prior.previous_timestep(late[0]) == late[1]
    with pytest.raises(ValueError, match="strength"):
        prior.timesteps(10, strength=0.0)
    with pytest.raises(ValueError, match="keeps no step"):
        prior.timesteps(4, strength=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        prior.timesteps(0)
    with pytest.raises(ValueError, match="timestep_spacing"):
        ddim_from_config(DDPMScheduler().config, "sideways")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_tweedie_ddim_step_and_jump_are_exact_for_the_exact_prediction(prediction_type: str) -> None:
    """With the true noise, Tweedie recovers z0, and a DDIM step or a longer jump (`step_to`) lands on z0 noised
    with the same noise."""
    prior = prior_with(prediction_type)
    generator = torch.Generator().manual_seed(0)
    z0 = torch.rand(2, 3, PIXEL_SIZE, PIXEL_SIZE, generator=generator) * 2 - 1
    noise = torch.randn(z0.shape, generator=generator)
    for t in prior.timesteps(4):
        a = prior.alpha_bar(t)
        z_t = prior.noise_to(z0, t, noise)
        torch.testing.assert_close(z_t, a.sqrt() * z0 + (1 - a).sqrt() * noise)
        exact = {"epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * z0, "sample": z0}
        output = exact[prediction_type]
        torch.testing.assert_close(prior.tweedie(z_t, t, output), z0, atol=2e-4, rtol=1e-4)
        previous = prior.previous_timestep(t)
        expected = z0 if previous < 0 else prior.noise_to(z0, previous, noise)
        torch.testing.assert_close(prior.step(z_t, t, output), expected, atol=2e-4, rtol=1e-4)
        jumped = prior.step_to(z_t, t, 1, output)
        torch.testing.assert_close(jumped, prior.noise_to(z0, 1, noise), atol=2e-4, rtol=1e-4)


def test_step_to_the_previous_timestep_is_the_ddim_step_and_goes_only_to_cleaner_steps() -> None:
    prior = prior_with("epsilon")
    t = int(prior.timesteps(4)[0])
    z_t, output = torch.randn(2, 2, 3, PIXEL_SIZE, PIXEL_SIZE, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(prior.step_to(z_t, t, prior.previous_timestep(t), output), prior.step(z_t, t, output))
    for s in (t, t + 1, -1):
        with pytest.raises(ValueError, match="from a noisier step to a cleaner one"):
            prior.step_to(z_t, t, s, output)


class PointMassPrior(PixelDiffusionPrior):
    """A prior whose data is the one image z0: its denoiser's output is the exact one, so every solver that
    integrates the chain correctly lands on z0, from any noise and any step count."""

    def __init__(self, prediction_type: str, z0: torch.Tensor) -> None:
        super().__init__(tiny_unet(), ddim_from_config(DDPMScheduler(prediction_type=prediction_type).config, "trailing"))
        self.z0 = z0

    def predict(self, z_t: torch.Tensor, t: int | torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        a = self.alpha_bar(t)
        noise = (z_t - a.sqrt() * self.z0) / (1 - a).sqrt()
        exact = {"epsilon": noise, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * self.z0, "sample": self.z0}
        return exact[self.prediction_type]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_every_solver_lands_on_the_data_of_a_point_mass(solver: str, prediction_type: str) -> None:
    generator = torch.Generator().manual_seed(0)
    z0 = torch.rand(2, 3, PIXEL_SIZE, PIXEL_SIZE, generator=generator) * 1.8 - 0.9
    prior = PointMassPrior(prediction_type, z0)
    for num_steps, strength in ((5, 1.0), (10, 0.5), (1, 1.0)):  # step counts that divide 1000: DDIM ends at -1
        timesteps = prior.timesteps(num_steps, strength)
        start = prior.noise_to(z0, timesteps[0], torch.randn(z0.shape, generator=generator))
        torch.testing.assert_close(prior.solve(start, timesteps, solver), z0, atol=1e-3, rtol=1e-3)


def test_solve_refuses_what_it_cannot_walk() -> None:
    prior = prior_with("epsilon")
    z = torch.randn(1, *prior.latent_shape)
    with pytest.raises(ValueError, match="solver must be one of"):
        prior.solve(z, prior.timesteps(4), "euler")
    with pytest.raises(ValueError, match="deterministic; eta must be 0"):
        prior.solve(z, prior.timesteps(4), "dpmsolver++", eta=1.0)
    with pytest.raises(ValueError, match="tail of the schedule"):
        prior.solve(z, prior.timesteps(8)[::2], "dpmsolver++")


def test_stochastic_step_is_seeded_and_renoise_has_the_right_variance() -> None:
    prior = prior_with("epsilon")
    t = prior.timesteps(4)[1]
    z = torch.randn(2, 3, PIXEL_SIZE, PIXEL_SIZE)
    output = torch.randn_like(z)

    def stochastic(seed: int) -> torch.Tensor:
        return prior.step(z, t, output, eta=1.0, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(stochastic(1), stochastic(1))
    assert not torch.allclose(stochastic(1), stochastic(2))
    assert not torch.allclose(stochastic(1), prior.step(z, t, output))
    with pytest.raises(ValueError, match="generator"):
        prior.step(z, t, output, eta=1.0)

    generator = torch.Generator().manual_seed(0)
    s, t = 249, 749
    z_s = prior.noise_to(torch.zeros(1, 3, 256, 256), s, torch.randn(1, 3, 256, 256, generator=generator))
    z_t = prior.renoise(z_s, s, t, torch.randn(z_s.shape, generator=generator))
    assert abs(float(z_t.var()) - float(1 - prior.alpha_bar(t))) < 0.02
    with pytest.raises(ValueError, match="noisier"):
        prior.renoise(z_t, t, s, z_t)


def test_sample_noise_is_seeded_per_member() -> None:
    prior = prior_with("epsilon")
    pair = prior.sample_noise(2, [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    alone = prior.sample_noise(1, [torch.Generator().manual_seed(4)])
    assert pair.shape == (2, *prior.latent_shape)
    torch.testing.assert_close(pair[1:], alone)
    with pytest.raises(ValueError, match="generators"):
        prior.sample_noise(3, [torch.Generator()])


def test_offset_noise_prior_draws_and_injects_per_channel_shifts(tmp_path: Path, caplog) -> None:
    """A prior trained on offset noise (recorded in its scheduler config) starts from and injects that noise."""
    tiny_unet().save_pretrained(tmp_path / "unet")
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    scheduler.register_to_config(noise_offset=0.5)
    scheduler.save_pretrained(tmp_path / "scheduler")
    with caplog.at_level("WARNING"):
        prior = PixelDiffusionPrior.from_pretrained(tmp_path)
    assert "noise_offset" not in caplog.text  # our key is read by the prior, not passed on to diffusers
    assert prior.noise_offset == 0.5 and prior.describe()["noise_offset"] == 0.5

    noise = prior.sample_noise(2000, torch.Generator().manual_seed(0))
    side = PIXEL_SIZE
    assert noise.mean((2, 3)).std().item() == pytest.approx((0.25 + 1 / side**2) ** 0.5, rel=0.05)
    assert (noise - noise.mean((2, 3), keepdim=True)).std().item() == pytest.approx(1.0, rel=0.02)
    pair = prior.sample_noise(2, [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    torch.testing.assert_close(pair[1:], prior.sample_noise(1, [torch.Generator().manual_seed(4)]))

    t = prior.timesteps(4)[1]
    z, output = torch.zeros(2000, 3, side, side), torch.zeros(2000, 3, side, side)
    injected = prior.step(z, t, output, eta=1.0, generator=torch.Generator().manual_seed(0))
    shift_share = ((0.25 + 1 / side**2) / 1.25) ** 0.5  # channel means' std over all values' std
    assert injected.mean((2, 3)).std().item() == pytest.approx(shift_share * injected.std().item(), rel=0.05)

    white = PixelDiffusionPrior(tiny_unet(), ddim_from_config(DDPMScheduler().config, "trailing"))
    assert white.noise_offset == 0.0
    assert white.sample_noise(2000, torch.Generator().manual_seed(0)).mean((2, 3)).std().item() < 0.1
    scheduler.register_to_config(noise_offset=-1.0)
    scheduler.save_pretrained(tmp_path / "scheduler")
    with pytest.raises(ValueError, match="noise_offset must be a number >= 0, got -1.0"):
        PixelDiffusionPrior.from_pretrained(tmp_path)


def test_latent_prior_loads_offline_and_conditions_on_the_prompt(latent_dir: Path) -> None:
    prior = LatentDiffusionPrior.from_pretrained(latent_dir, prompt="a red square")
    assert prior.image_size == 16 and prior.latent_shape == (4, 8, 8)
    assert prior.condition.shape == (1, PROMPT_LENGTH, 16)
    assert prior.describe()["prompt"] == "a red square"
    assert (prior.device, prior.dtype) == (prior.unet.device, prior.unet.dtype)
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        z = prior.encode(images)
        assert z.shape == (2, 4, 8, 8)
        torch.testing.assert_close(prior.encode(images), z)
        decoded = prior.decode(z)
        assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
        t = prior.timesteps(2)[0]
        plain = prior.predict(z, t)
        assert plain.shape == z.shape
        other = prior.predict(z, t, condition=prior.encode_prompt("a blue circle"))
        assert not torch.allclose(plain, other)
        prior.cfg_scale = 3.0
        assert not torch.allclose(prior.predict(z, t), plain)
        with pytest.raises(ValueError, match="condition"):
            prior.predict(z, t, condition=torch.zeros(3, PROMPT_LENGTH, 16))
        assert prior.step(z, t).shape == z.shape
    with pytest.raises(ValueError, match="cfg_scale"):
        LatentDiffusionPrior.from_pretrained(latent_dir, cfg_scale=-1.0)
