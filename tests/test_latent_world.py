"""The latent world model trains, saves as a StableDiffusionPipeline folder and runs through the engine's SD code."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open

from conftest import REPO
from preimage.engine.priors import LatentDiffusionPrior
from preimage.engine.sets import reference_set
from preimage.engine.directions import DirectionSettings, invert, regenerate
from preimage.pipeline.models import model_files, resolve_prior, unconditional
from preimage.world.attributes import caption
from preimage.world.generator import WorldSpec, make_split
from preimage.world.oracle import load_oracle
from preimage.world.training.latent import (
    attribute_prompts,
    build_tokenizer,
    caption_words,
    evaluate_latent,
    train_latent_model,
)
from preimage.world.training.oracle import train_oracle

TINY_LATENT = {
    "vae": {"block_out_channels": [8, 8, 8], "layers_per_block": 1, "latent_channels": 4, "kl_weight": 1e-6,
            "steps": 2, "batch_size": 4, "learning_rate": 0.001},
    "unet": {"block_out_channels": [8, 16], "layers_per_block": 1, "attention_heads": 2,
             "text_encoder": {"width": 16, "layers": 1, "heads": 2, "max_length": 16},
             "empty_prompt": 0.1, "partial_prompt": 0.3, "min_snr_gamma": 5, "steps": 2, "batch_size": 4,
             "learning_rate": 0.001, "ema_decay": 0.99},
    "seed": 0,
}
TINY_TIMM = {"architecture": "resnet10t", "model_args": {"channels": [8, 16, 32, 64]}, "epochs": 1,
             "batch_size": 32, "learning_rate": 0.002, "seed": 0}


@pytest.fixture(scope="module")
def spec() -> WorldSpec:
    world = yaml.safe_load((REPO / "config.yaml").read_text())["world"]
    world = {**world, "splits": {name: 32 for name in world["splits"]}}
    return WorldSpec.from_config(world)


@pytest.fixture(scope="module")
def latent_dir(spec, tmp_path_factory):
    table, images = make_split(spec, "prior_train")
    out = tmp_path_factory.mktemp("latent")
    metrics = train_latent_model(table, images, spec.shapes, TINY_LATENT, "cpu", out)
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out


def test_every_caption_word_is_one_token_and_a_full_caption_fits():
    words = caption_words(("circle", "square", "triangle", "cross"))
    tokenizer = build_tokenizer(words, max_length=16)
    assert all(len(tokenizer.tokenize(word)) == 1 for word in words)
    full = caption({"shape": "square", "fg_colour": "red", "bg_colour": "purple", "texture": "stripes",
                    "tag": "present"})
    assert tokenizer.tokenize(full) == [f"{word}</w>" for word in full.split()]
    assert len(tokenizer(full).input_ids) == len(full.split()) + 2  # start and end tokens


def test_the_folder_is_a_stable_diffusion_pipeline_with_a_unit_variance_scaling(latent_dir):
    index = json.loads((latent_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert {"vae", "unet", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    assert list(latent_dir.rglob("*.bin")) == []  # safetensors only
    for component in ("vae", "unet", "text_encoder"):  # stored in half precision, to keep the committed folder small
        weights = next((latent_dir / component).glob("*.safetensors"))
        with safe_open(weights, "pt") as stored:
            assert {stored.get_slice(key).get_dtype() for key in stored.keys()} == {"F16"}, component
    vae = json.loads((latent_dir / "vae" / "config.json").read_text())
    metrics = json.loads((latent_dir / "metrics.json").read_text())
    assert vae["scaling_factor"] == pytest.approx(metrics["vae"]["scaling_factor"]) and vae["scaling_factor"] > 0


def test_the_registry_loads_it_as_a_latent_prior_with_class_prompts_and_cfg(latent_dir, config):
    settings = {"source": str(latent_dir), "dtype": "float32", "prompt": "a {class_name}", "cfg_scale": 3.0}
    prior = resolve_prior({**config, "models": {**config["models"], "prior": settings}}, "cpu", class_name="square")
    assert isinstance(prior, LatentDiffusionPrior)
    assert prior.prompt == "a square" and prior.image_size == 32 and prior.latent_shape == (4, 8, 8)
    images = reference_set(prior, 2, seed=0, num_steps=2).images
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    again = reference_set(prior, 2, seed=0, num_steps=2).images
    assert torch.equal(images, again)
    prior.set_prompt("a circle")  # another prompt conditions the UNet differently
    assert not torch.equal(prior.condition, prior.encode_prompt("a square"))


def test_a_global_direction_inverts_and_edits_with_the_unconditional_model(latent_dir, config):
    """A prompt naming {class_name} cannot serve images of every class: the direction step takes the empty prompt
    without guidance, whose DDIM inversion is exact, and leaves the run's config as it was."""
    settings = {"source": str(latent_dir), "dtype": "float32", "prompt": "a {class_name}", "cfg_scale": 3.0}
    configured = {**config, "models": {**config["models"], "prior": settings}}
    with pytest.raises(ValueError, match="names {class_name}"):
        resolve_prior(configured, "cpu")
    prior = resolve_prior(unconditional(configured), "cpu")
    assert (prior.prompt, prior.negative_prompt, prior.cfg_scale) == ("", "", 0.0)
    assert configured["models"]["prior"]["prompt"] == "a {class_name}"
    images = torch.rand(2, 3, 32, 32)
    steps = DirectionSettings(num_steps=2, level=0.5)
    latents = invert(prior, images, steps)
    assert latents.shape == (2, *prior.latent_shape)
    assert regenerate(prior, latents, steps).shape == images.shape


def test_jobs_sampling_it_wait_for_its_weights_not_for_its_evaluation(latent_dir, config):
    """The rules' inputs for the prior are what loading reads: the evaluation and samples that evaluate_latent
    writes beside them would otherwise rerun every set job of the preset after each evaluation."""
    files = model_files({**config, "models": {**config["models"], "prior": {"source": str(latent_dir)}}}, "prior")
    names = {str(Path(file).relative_to(latent_dir)) for file in files}
    assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json"} <= names
    assert "metrics.json" not in names and all("/" in name for name in names - {"model_index.json"})


def test_gradients_reach_the_latent_through_the_decoder(latent_dir):
    prior = LatentDiffusionPrior.from_pretrained(latent_dir)
    z = torch.randn(1, *prior.latent_shape, requires_grad=True)
    prior.decode(z).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def oracle_dir(spec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oracle")
    train_oracle(spec, TINY_TIMM, "cpu", out)
    return out


def test_the_evaluation_reads_validity_frequencies_and_prompt_adherence(latent_dir, oracle_dir, spec):
    metrics, samples = evaluate_latent(latent_dir, oracle_dir, spec, n=4, per_prompt=1, num_steps=2,
                                       cfg_scale=3.0, device_name="cpu")
    assert samples.shape == (4, 32, 32, 3) and samples.dtype == np.uint8
    assert 0.0 <= metrics["valid_fraction"] <= 1.0
    assert set(metrics["total_variation"]) == {"shape", "fg_colour", "bg_colour", "texture", "tag"}
    assert set(metrics["prompt_adherence"]) == {"cfg_0", "cfg_3"}
    for adherence in metrics["prompt_adherence"].values():
        assert set(adherence) == set(attribute_prompts(spec.shapes))
        assert set(adherence["tag"]["per_value"]) == {"absent", "present"}


def test_the_shape_benchmark_counts_the_valid_shapes_its_total_variation_reads(latent_dir, oracle_dir, spec):
    path = REPO / "benchmarks" / "latent_shapes.py"
    module_spec = importlib.util.spec_from_file_location("benchmark_latent_shapes", path)
    benchmark = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(benchmark)
    prior = LatentDiffusionPrior.from_pretrained(latent_dir)
    scores, shapes = benchmark.draw_scores(prior, load_oracle(oracle_dir), spec, samples=8, steps=2, seed=3)
    assert scores["seed"] == 3 and list(shapes.index) == list(spec.shapes)
    assert shapes.sum() == round(8 * scores["valid"]) > 0  # the seeded tiny models' samples are all valid
    shares = shapes.to_numpy() / shapes.sum()
    assert scores["shape"] == pytest.approx(0.5 * np.abs(shares - 1 / len(spec.shapes)).sum())
    again, _ = benchmark.draw_scores(prior, load_oracle(oracle_dir), spec, samples=8, steps=2, seed=3)
    assert again == scores  # a draw is seeded


def test_attribute_prompts_name_one_value_each():
    prompts = attribute_prompts(("circle", "square"))
    assert prompts["shape"] == {"circle": "a circle", "square": "a square"}
    assert prompts["fg_colour"]["red"] == "a red shape"
    assert prompts["tag"]["present"] == "a shape with a tag"
    assert prompts["texture"]["stripes"] == "a shape on a striped background"


def test_the_preset_validates_and_samples_from_the_folder_the_rule_trains(config):
    from snakemake.utils import update_config

    from preimage.pipeline.config import validate_config
    from preimage.pipeline.models import model_dir

    merged = copy.deepcopy(config)
    update_config(merged, yaml.safe_load((REPO / "presets" / "world_latent.yaml").read_text()))
    merged = validate_config(merged, source="world_latent.yaml")
    assert merged["models"]["prior"]["source"] == str(model_dir(config, "latent"))
    assert merged["world"]["shortcuts"] == config["world"]["shortcuts"]  # the same world, another prior
    assert merged["sets"]["samplers"]["guided"]["approach_steps"] is None  # the schedule's own, as measured there
    assert (REPO / merged["models"]["prior"]["source"] / "model_index.json").is_file()


def test_a_refine_stage_trains_the_unet_further_and_keeps_the_autoencoder(latent_dir, spec, tmp_path):
    from preimage.world.training.latent import refine_latent_model

    table, images = make_split(spec, "prior_train")
    refine = {**TINY_LATENT, "refine": {"steps": 2, "learning_rate": 0.0003, "seed": 1, "empty_prompt": 0.5}}
    metrics = refine_latent_model(table, images, latent_dir, refine, "cpu", tmp_path)
    assert metrics["base"] == latent_dir.name and metrics["unet"]["steps"] == 2
    for part, changed in (("vae", False), ("unet", True), ("text_encoder", True)):
        name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
        with safe_open(latent_dir / part / name, "pt") as before, safe_open(tmp_path / part / name, "pt") as after:
            differs = any(not torch.equal(before.get_tensor(key), after.get_tensor(key)) for key in before.keys())
        assert differs == changed, part
    prior = LatentDiffusionPrior.from_pretrained(tmp_path)
    assert prior.vae.config.scaling_factor == pytest.approx(json.loads((latent_dir / "vae" / "config.json").read_text())["scaling_factor"])


def test_a_16x16_latent_with_attention_only_below_the_top_level_samples_32x32_images(spec, tmp_path):
    table, images = make_split(spec, "prior_train")
    cfg = copy.deepcopy(TINY_LATENT)
    cfg["vae"]["block_out_channels"] = [8, 8]  # one downsampling: 32x32 images, 16x16 latents
    cfg["unet"].update(block_out_channels=[8, 16], attention=[False, True])
    train_latent_model(table, images, spec.shapes, cfg, "cpu", tmp_path)
    prior = LatentDiffusionPrior.from_pretrained(tmp_path, prompt="a square", cfg_scale=2.0)
    assert list(prior.unet.config.down_block_types) == ["DownBlock2D", "CrossAttnDownBlock2D"]
    assert list(prior.unet.config.up_block_types) == ["CrossAttnUpBlock2D", "UpBlock2D"]
    assert prior.latent_shape == (4, 16, 16) and prior.image_size == 32
    drawn = reference_set(prior, 2, seed=0, num_steps=2).images
    assert drawn.shape == (2, 3, 32, 32) and torch.isfinite(drawn).all()
