"""The SDXL-class prior on a tiny randomly initialised SDXL pipeline saved and loaded offline.

The reference throughout is diffusers' own StableDiffusionXLPipeline on the same weights: the prior must
encode prompts and denoise exactly as the pipeline does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import timm
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from test_priors import PROMPT_LENGTH, save_latent_prior, tiny_tokenizer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import preimage
from preimage.engine.models import load_classifier
from preimage.engine.objectives import label
from preimage.engine.priors import LatentDiffusionPrior, SdxlDiffusionPrior
from preimage.engine.samplers import GuidedSampler, NoiseOptSampler

os.environ["HF_HUB_OFFLINE"] = "1"
torch.set_num_threads(1)

IMAGE_SIZE = 16
TEXT_WIDTH = 16
PROJECTION = 8
TIME_EMBED = 8


def _text_config(vocab_size: int, **extra) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=PROMPT_LENGTH,
        **extra,
    )


def tiny_sdxl_pipeline() -> StableDiffusionXLPipeline:
    """SDXL's architecture in miniature: two CLIP text encoders and a "text_time" UNet."""
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    vocab_size = len(tokenizer.get_vocab())
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        cross_attention_dim=2 * TEXT_WIDTH,
        attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=6 * TIME_EMBED + PROJECTION,
    )
    vae = AutoencoderKL(
        latent_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        scaling_factor=0.13025,
    )
    scheduler = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False, steps_offset=1
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(vocab_size)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(vocab_size, projection_dim=PROJECTION)),
        tokenizer=tokenizer,
        tokenizer_2=tiny_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )


def save_sdxl_prior(path: Path) -> Path:
    """A tiny SDXL-layout directory, as StableDiffusionXLPipeline.save_pretrained writes it."""
    tiny_sdxl_pipeline().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sdxl_prior(tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(scope="module")
def pipeline(sdxl_dir: Path) -> StableDiffusionXLPipeline:
    return StableDiffusionXLPipeline.from_pretrained(sdxl_dir, local_files_only=True, use_safetensors=True)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    path = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=3, channels=(8, 16, 32, 64))
    timm.models.save_for_hf(model, str(path), model_config={"label_names": ["cat", "dog", "fish"]},
                            model_args={"channels": [8, 16, 32, 64]}, data_config={"input_size": (3, 16, 16)},
                            safe_serialization=True)
    return load_classifier(str(path))


def test_prompt_encoding_matches_the_sdxl_pipeline(sdxl_dir, pipeline) -> None:
    prior = SdxlDiffusionPrior.from_pretrained(sdxl_dir, prompt="a cat", negative_prompt="blurry", cfg_scale=3.0)
    assert prior.image_size == IMAGE_SIZE and prior.latent_shape == (4, IMAGE_SIZE // 2, IMAGE_SIZE // 2)
    assert prior.condition.shape == (1, PROMPT_LENGTH, 2 * TEXT_WIDTH)
    embeds, negative, pooled, negative_pooled = pipeline.encode_prompt(
        "a cat", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt="blurry"
    )
    torch.testing.assert_close(prior.condition, embeds)
    torch.testing.assert_close(prior._negative, negative)
    torch.testing.assert_close(prior._pooled, pooled)
    torch.testing.assert_close(prior._negative_pooled, negative_pooled)
    time_ids = pipeline._get_add_time_ids(
        (IMAGE_SIZE, IMAGE_SIZE), (0, 0), (IMAGE_SIZE, IMAGE_SIZE), embeds.dtype, text_encoder_projection_dim=PROJECTION
    )
    torch.testing.assert_close(prior._time_ids, time_ids)
    assert prior.describe()["prompt"] == "a cat" and prior.describe()["prior"] == "SdxlDiffusionPrior"


@pytest.mark.parametrize("cfg_scale", [0.0, 3.0])
def test_ddim_sampling_matches_the_sdxl_pipeline(sdxl_dir, pipeline, cfg_scale: float) -> None:
    """Two DDIM steps from the same noise land on the pipeline's latents (empty negative prompt: zeros)."""
    prior = SdxlDiffusionPrior.from_pretrained(sdxl_dir, prompt="a dog", cfg_scale=cfg_scale)
    noise = prior.sample_noise(2, torch.Generator().manual_seed(0))
    pipeline.scheduler = DDIMScheduler.from_config(prior.scheduler.config)
    expected = pipeline(
        "a dog", num_inference_steps=2, guidance_scale=cfg_scale, latents=noise.clone(), output_type="latent",
        num_images_per_prompt=2,
    ).images
    z = noise
    with torch.no_grad():
        for t in prior.timesteps(2):
            z = prior.step(z, t)
    torch.testing.assert_close(z, expected, atol=1e-5, rtol=1e-4)


def test_sdxl_prior_encodes_decodes_and_takes_a_condition_override(sdxl_dir) -> None:
    prior = SdxlDiffusionPrior.from_pretrained(sdxl_dir, prompt="a fish")
    images = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = prior.encode(images)
        assert z.shape == (2, 4, IMAGE_SIZE // 2, IMAGE_SIZE // 2)
        decoded = prior.decode(z)
        assert decoded.shape == images.shape and 0 <= decoded.min() and decoded.max() <= 1
        t = prior.timesteps(2)[0]
        plain = prior.predict(z, t)
        other = prior.predict(z, t, condition=prior.encode_prompt("a bird"))
        assert plain.shape == z.shape and not torch.allclose(plain, other)
    assert prior.to("cpu") is prior and prior.device.type == "cpu"


def test_float16_keeps_a_force_upcast_vae_in_float32(sdxl_dir) -> None:
    prior = SdxlDiffusionPrior.from_pretrained(sdxl_dir, dtype=torch.float16)
    assert prior.vae.config.force_upcast and prior.vae.dtype == torch.float32
    assert prior.unet.dtype == torch.float16 and prior.dtype == torch.float16
    assert prior.condition.dtype == torch.float16 and prior._time_ids.dtype == torch.float16


def test_each_prior_refuses_the_other_kind_of_unet(sdxl_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="SdxlDiffusionPrior"):
        LatentDiffusionPrior.from_pretrained(sdxl_dir)
    save_latent_prior(tmp_path)
    with pytest.raises(ValueError, match="addition_embed_type='text_time'"):
        SdxlDiffusionPrior(*_sd_components_as_sdxl(tmp_path))


def _sd_components_as_sdxl(path: Path) -> tuple:
    sd = LatentDiffusionPrior.from_pretrained(path)
    encoder_2 = CLIPTextModelWithProjection(_text_config(len(sd.tokenizer.get_vocab()), projection_dim=PROJECTION))
    return sd.vae, sd.unet, sd.text_encoder, encoder_2, sd.tokenizer, sd.tokenizer, sd.scheduler


@pytest.mark.parametrize(
    "sampler",
    [
        GuidedSampler(num_steps=2, guidance_scale=0.5, batch_size=2),
        NoiseOptSampler(num_steps=2, iterations=2, batch_size=2, optimize_condition=True),
    ],
    ids=["guided", "noise_opt"],
)
def test_a_two_step_sdxl_invariant_set(sdxl_dir, classifier, sampler) -> None:
    prior = SdxlDiffusionPrior.from_pretrained(sdxl_dir, prompt="a cat")
    source = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    result = preimage.sample(label(classifier), source, prior, sampler, 2, seed=0, source_class="cat")
    assert result.images.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.isfinite(result.images).all() and 0 <= result.images.min() and result.images.max() <= 1
    assert len(result.members) == 2 and result.members["loss"].notna().all()
    again = preimage.sample(label(classifier), source, prior, sampler, 2, seed=0, source_class="cat")
    torch.testing.assert_close(again.images, result.images)
