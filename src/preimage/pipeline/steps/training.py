"""Steps that train the shortcut world's own models and evaluate its diffusion prior.

Each trainer's libraries (timm, open_clip, diffusers) are imported inside the step that uses it, so a job
imports only its own: every Snakemake job is a new process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from preimage.utils.io import image_grid, write_json, write_png
from preimage.world.generator import WorldSpec, make_split

# world model -> (module, function) of its trainer, imported only when that model trains
TRAINERS = {
    "classifier": ("preimage.world.training.classifier", "train_classifier"),
    "oracle": ("preimage.world.training.oracle", "train_oracle"),
    "clip": ("preimage.world.training.clip", "train_clip"),
    "robust": ("preimage.world.training.robust", "train_robust"),
    "regressor": ("preimage.world.training.regressor", "train_regressor"),
}
PRIOR_DATA = "prior_train"  # the unbiased split both stages of the prior learn from


def _trainer(model: str) -> Callable[..., dict]:
    if model not in TRAINERS:
        raise ValueError(f"unknown world model {model!r}; expected one of {list(TRAINERS)}")
    module, name = TRAINERS[model]
    return getattr(importlib.import_module(module), name)


def train_world_model(model: str, world: dict, training: dict, device: str, metrics: str | PathLike,
                      threads: int) -> dict:
    """Train one of the world's supervised models ("classifier", "oracle", "clip", "robust" or "regressor") with its
    `training` settings; its files go to the folder of `metrics`, where its metrics are written as JSON."""
    train = _trainer(model)
    torch.set_num_threads(threads)
    spec = WorldSpec.from_config(world)
    out_dir = Path(metrics).parent
    result = train(spec, training, device, out_dir)
    write_json(result, metrics)
    return result


def train_world_prior(world: dict, training: dict, device: str, metrics: str | PathLike, threads: int) -> dict:
    """Train the first stage of the world's pixel-space diffusion prior on its unbiased split; the diffusers
    folder goes to the folder of `metrics`, where its metrics are written as JSON."""
    from preimage.world.training.prior import train_prior

    torch.set_num_threads(threads)
    _, images = make_split(WorldSpec.from_config(world), PRIOR_DATA)
    out_dir = Path(metrics).parent
    result = train_prior(images, training, device, out_dir)
    write_json(result, metrics)
    return result


def train_world_latent(world: dict, training: dict, device: str, metrics: str | PathLike, threads: int) -> dict:
    """Train the world's latent diffusion model (VAE, UNet, text encoder) on its unbiased split and captions; the
    pipeline folder goes to the folder of `metrics`, where its metrics are written as JSON."""
    from preimage.world.training.latent import train_latent_model

    torch.set_num_threads(threads)
    spec = WorldSpec.from_config(world)
    table, images = make_split(spec, PRIOR_DATA)
    out_dir = Path(metrics).parent
    result = train_latent_model(table, images, spec.shapes, training, device, out_dir)
    write_json(result, metrics)
    return result


def refine_world_prior(base_unet: str | PathLike, world: dict, training: dict, device: str,
                       metrics: str | PathLike, threads: int) -> dict:
    """Fine-tune the prior's first stage (the diffusers folder holding `base_unet`, its UNet weights) on
    offset noise, its second stage; the result goes to the folder of `metrics`, with its metrics as JSON."""
    from preimage.world.training.prior import refine_prior

    torch.set_num_threads(threads)
    _, images = make_split(WorldSpec.from_config(world), PRIOR_DATA)
    base_dir = Path(base_unet).parents[1]
    out_dir = Path(metrics).parent
    result = refine_prior(images, base_dir, training, device, out_dir)
    write_json(result, metrics)
    return result


def refine_world_latent(base_unet: str | PathLike, world: dict, training: dict, device: str,
                        metrics: str | PathLike, threads: int) -> dict:
    """Train the UNet and text encoder of the latent model's first stage (the pipeline folder holding
    `base_unet`, its UNet weights) further, its second stage; the folder goes to the folder of `metrics`, with
    its metrics as JSON."""
    from preimage.world.training.latent import refine_latent_model

    torch.set_num_threads(threads)
    table, images = make_split(WorldSpec.from_config(world), PRIOR_DATA)
    result = refine_latent_model(table, images, Path(base_unet).parents[1], training, device, Path(metrics).parent)
    write_json(result, metrics)
    return result


def evaluate_world_prior(prior_unet: str | PathLike, oracle_weights: str | PathLike, world: dict, samples: int,
                         sampling_steps: int, device: str, metrics: str | PathLike, grid: str | PathLike,
                         threads: int) -> dict:
    """Score `samples` unconditional samples of a prior (the diffusers folder holding `prior_unet`) with the
    world's oracle (the folder of `oracle_weights`): metrics as JSON, and its first 64 samples as a PNG grid
    drawn three times larger."""
    from preimage.world.training.prior import evaluate_prior

    torch.set_num_threads(threads)
    result, images = evaluate_prior(
        Path(prior_unet).parents[1],
        Path(oracle_weights).parent,
        WorldSpec.from_config(world),
        samples,
        sampling_steps,
        device,
    )
    write_json(result, metrics)
    write_sample_grid(images, grid)
    return result


def evaluate_world_latent(latent_unet: str | PathLike, oracle_weights: str | PathLike, world: dict, evaluation: dict,
                          device: str, metrics: str | PathLike, grid: str | PathLike, threads: int) -> dict:
    """Score the latent world model (the pipeline folder holding `latent_unet`, its UNet weights) with the oracle:
    unconditional validity and attribute frequencies, and prompt adherence with and without classifier-free
    guidance, as JSON; its first 64 unconditional samples as a PNG grid drawn three times larger."""
    from preimage.world.training.latent import evaluate_latent

    torch.set_num_threads(threads)
    result, images = evaluate_latent(
        Path(latent_unet).parents[1],
        Path(oracle_weights).parent,
        WorldSpec.from_config(world),
        evaluation["prior_samples"],
        evaluation["latent_prompt_samples"],
        evaluation["prior_sampling_steps"],
        evaluation["latent_cfg_scale"],
        device,
    )
    write_json(result, metrics)
    write_sample_grid(images, grid)
    return result


def write_sample_grid(images: np.ndarray, grid: str | PathLike) -> None:
    """The first 64 of (n, H, W, 3) uint8 samples as a PNG grid of 8 columns, drawn three times larger."""
    picture = image_grid(images[:64], columns=8)
    write_png(np.kron(picture, np.ones((3, 3, 1), dtype=np.uint8)), grid)
