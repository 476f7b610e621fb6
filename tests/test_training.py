"""Each world model trains, saves in its library's real format and loads back identically."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import timm
import torch
from diffusers import UNet2DModel

from preimage.engine.priors.base import offset_noise
from preimage.engine.priors.pixel import PixelDiffusionPrior
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec, make_split
from preimage.world.oracle import load_oracle, read_attributes
from preimage.world.training.classifier import build_timm, normalise, train_classifier
from preimage.world.training.clip import train_clip
from preimage.world.training.oracle import train_oracle
from preimage.world.training.prior import (
    build_scheduler,
    build_unet,
    evaluate_prior,
    min_snr_weights,
    refine_prior,
    train_prior,
)

TINY_TIMM = {"architecture": "resnet10t", "model_args": {"channels": [8, 16, 32, 64]}, "epochs": 1,
             "batch_size": 32, "learning_rate": 0.002, "seed": 0}
TINY_PRIOR = {"block_out_channels": [8, 16], "layers_per_block": 1, "steps": 3, "batch_size": 8,
              "learning_rate": 0.001, "ema_decay": 0.99, "seed": 0}
TINY_CLIP = {"embed_dim": 16, "vision_width": 8, "text_width": 16, "text_layers": 1, "steps": 3,
             "batch_size": 16, "learning_rate": 0.001, "seed": 0}


@pytest.fixture
def spec(tiny_world) -> WorldSpec:
    return WorldSpec.from_config(tiny_world)


@pytest.fixture
def images(spec) -> torch.Tensor:
    return to_tensor(make_split(spec, "unbiased_test")[1][:8])


def test_classifier_round_trips_through_timm_local_dir(spec, images, tmp_path):
    metrics = train_classifier(spec, TINY_TIMM, "cpu", tmp_path)
    assert 0.0 <= metrics["iid_accuracy"] <= 1.0
    assert {s["class"] for s in metrics["shortcuts"]} == {s.cls for s in spec.shortcuts}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["label_names"] == list(spec.shapes) and config["architecture"] == "resnet10t"
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    again = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded(normalise(loaded, images)), again(normalise(again, images)))
    assert sum(p.numel() for p in loaded.parameters()) == metrics["parameters"]


def test_oracle_round_trips_and_reads_every_attribute(spec, images, tmp_path):
    metrics = train_oracle(spec, TINY_TIMM, "cpu", tmp_path)
    assert {"shape_accuracy", "tag_accuracy", "valid_rate_on_corrupted"} <= set(metrics)
    predicted = read_attributes(load_oracle(tmp_path), images, spec.shapes)
    assert len(predicted) == len(images)
    assert set(predicted["shape"]) <= set(spec.shapes)
    assert set(predicted["valid"]) <= {"valid", "invalid"}


def test_prior_round_trips_through_save_pretrained(spec, tmp_path):
    _, data = make_split(spec, "prior_train")
    metrics = train_prior(data, TINY_PRIOR, "cpu", tmp_path)
    assert metrics["steps"] == 3 and np.isfinite(metrics["final_loss"])
    unet = UNet2DModel.from_pretrained(tmp_path / "unet", use_safetensors=True).eval()
    noise = torch.randn(2, 3, spec.image_size, spec.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = unet(noise, torch.tensor([10, 500])).sample
        second = UNet2DModel.from_pretrained(tmp_path / "unet").eval()(noise, torch.tensor([10, 500])).sample
    assert torch.equal(first, second)


def test_prior_trains_under_bf16_autocast_with_attention_at_two_levels(spec, tmp_path):
    _, data = make_split(spec, "prior_train")
    cfg = {**TINY_PRIOR, "attention_levels": 2, "dtype": "bfloat16"}
    metrics = train_prior(data, cfg, "cpu", tmp_path)
    assert metrics["dtype"] == "bfloat16" and np.isfinite(metrics["final_loss"])
    unet = UNet2DModel.from_pretrained(tmp_path / "unet")
    assert unet.config.down_block_types == ["AttnDownBlock2D", "AttnDownBlock2D"]
    assert all(p.dtype == torch.float32 for p in unet.parameters())


def test_min_snr_weights_cap_clean_timesteps_and_keep_noisy_ones():
    scheduler = build_scheduler()
    t = torch.tensor([0, 500, 999])
    alphas = scheduler.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    weights = min_snr_weights(scheduler, t, gamma=5.0)
    assert torch.allclose(weights, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    assert weights[0] < 0.01 and weights[2] < 0.01  # nearly clean: capped; pure noise: SNR ~ 0
    assert weights[1] == pytest.approx(snr[1] / (snr[1] + 1))  # SNR below gamma: the clean-image loss


def test_prior_trains_with_min_snr_weighting_and_offset_noise(spec, tmp_path):
    _, data = make_split(spec, "prior_train")
    metrics = train_prior(data, {**TINY_PRIOR, "min_snr_gamma": 5.0, "noise_offset": 0.1}, "cpu", tmp_path)
    assert metrics["min_snr_gamma"] == 5.0 and metrics["noise_offset"] == 0.1 and np.isfinite(metrics["final_loss"])
    assert json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())["noise_offset"] == 0.1
    train_prior(data, {**TINY_PRIOR, "steps": 1}, "cpu", tmp_path / "white")  # white noise: the config diffusers writes
    assert "noise_offset" not in json.loads((tmp_path / "white" / "scheduler" / "scheduler_config.json").read_text())


def test_prior_refine_stage_fine_tunes_the_first_stage_on_offset_noise(spec, tmp_path):
    _, data = make_split(spec, "prior_train")
    cfg = {**TINY_PRIOR, "refine": {"noise_offset": 0.2, "steps": 2, "learning_rate": 0.01, "seed": 1}}
    train_prior(data, cfg, "cpu", tmp_path / "base")
    train_prior(data, TINY_PRIOR, "cpu", tmp_path / "alone")  # stage 1 ignores `refine`: the same weights
    base = UNet2DModel.from_pretrained(tmp_path / "base" / "unet")
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(),
                                                 UNet2DModel.from_pretrained(tmp_path / "alone" / "unet").state_dict().values()))
    metrics = refine_prior(data, tmp_path / "base", cfg, "cpu", tmp_path / "refined")
    assert metrics["base"] == "base" and metrics["steps"] == 2 and metrics["noise_offset"] == 0.2
    assert metrics["batch_size"] == TINY_PRIOR["batch_size"]  # inherited from stage 1
    refined = PixelDiffusionPrior.from_pretrained(tmp_path / "refined")
    assert refined.noise_offset == 0.2  # samplers draw the noise the second stage was trained on
    changed = [not torch.equal(a, b) for a, b in zip(base.state_dict().values(), refined.unet.state_dict().values())]
    assert any(changed)


def test_offset_noise_shifts_whole_channels_by_the_offset():
    noise = offset_noise(torch.Size([4000, 3, 8, 8]), 0.5, torch.Generator().manual_seed(0))
    channel_means = noise.mean((2, 3))  # white part: std 1/8; offset part: std 0.5
    assert channel_means.std().item() == pytest.approx((0.25 + 1 / 64) ** 0.5, rel=0.05)
    assert (noise - noise.mean((2, 3), keepdim=True)).std().item() == pytest.approx(1.0, rel=0.02)
    white = offset_noise(torch.Size([2, 3, 8, 8]), 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(white, torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)))


def test_prior_refuses_more_attention_levels_than_resolutions():
    with pytest.raises(ValueError, match="attention_levels: 3 must be between 1 and"):
        build_unet(16, {**TINY_PRIOR, "attention_levels": 3})


def test_prior_evaluation_scores_samples_with_the_oracle(spec, tmp_path):
    _, data = make_split(spec, "prior_train")
    train_prior(data, TINY_PRIOR, "cpu", tmp_path / "prior")
    train_oracle(spec, TINY_TIMM, "cpu", tmp_path / "oracle")
    metrics, samples = evaluate_prior(tmp_path / "prior", tmp_path / "oracle", spec, n=4, num_steps=2, device_name="cpu")
    assert samples.shape == (4, spec.image_size, spec.image_size, 3) and samples.dtype == np.uint8
    assert 0.0 <= metrics["valid_fraction"] <= 1.0
    assert set(metrics["total_variation"]) == {"shape", "fg_colour", "bg_colour", "texture", "tag"}


def test_clip_round_trips_through_open_clip_local_dir(spec, images, tmp_path):
    metrics = train_clip(spec, TINY_CLIP, "cpu", tmp_path)
    assert {f"zero_shot_{a}_accuracy" for a in ("shape", "fg_colour", "bg_colour", "texture", "tag")} <= set(metrics)
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tmp_path}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path}")
    model.eval()
    with torch.no_grad():
        text = model.encode_text(tokenizer(["a red square", "a shape with a tag"]), normalize=True)
        image = model.encode_image(images, normalize=True)
    assert text.shape == (2, 16) and image.shape == (8, 16)
    assert torch.allclose(text.norm(dim=1), torch.ones(2), atol=1e-4)


def test_a_world_network_starts_from_the_same_weights_in_every_process():
    cfg = {"architecture": "resnet10t", "model_args": {"channels": [8, 16, 32, 64]}, "seed": 3}
    torch.manual_seed(123)
    first = build_timm(cfg, num_classes=4).state_dict()
    torch.manual_seed(456)  # whatever the process's generator was left at
    second = build_timm(cfg, num_classes=4).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = build_timm({**cfg, "seed": 4}, num_classes=4).state_dict()
    assert not all(torch.equal(first[name], other[name]) for name in first)
