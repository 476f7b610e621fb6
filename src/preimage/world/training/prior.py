"""Train the world's pixel-space diffusion prior: a diffusers UNet2DModel with v-prediction.

v-prediction rather than epsilon: with epsilon the small UNet drifted in colour at this budget.
Min-SNR-gamma loss weighting (Hang et al. 2023) is optional: it stops nearly clean timesteps, whose
v-loss weighs the clean-image error by 1 + SNR, from dominating the gradient; on this world it lowered
the clean-image error at every noise level after 1,500 steps, and its 8,000-step prior draws real shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.training_utils import EMAModel, compute_snr
from tqdm import tqdm

from preimage.engine.priors.base import offset_noise
from preimage.engine.priors.pixel import PixelDiffusionPrior
from preimage.engine.sets import reference_set
from preimage.utils.devices import autocast, resolve_device, resolve_dtype, seed_everything
from preimage.utils.images import to_tensor, to_uint8
from preimage.world.attributes import CATEGORICAL
from preimage.world.generator import WorldSpec, value_probabilities
from preimage.world.oracle import attribute_distance, load_oracle, read_attributes
from preimage.world.training import first_stage
from preimage.world.training.common import Stopwatch, warmup_cosine


def build_unet(image_size: int, cfg: dict) -> UNet2DModel:
    """A small UNet with self-attention at its ``attention_levels`` lowest resolutions (default: the lowest).

    Attention at 16x16 as well as 8x8 (as in DDPM's CIFAR model) lets a 32x32 prior coordinate a shape's
    edges across the image rather than only sharpening them locally.
    """
    levels = len(cfg["block_out_channels"])
    attention = cfg.get("attention_levels", 1)
    if not 1 <= attention <= levels:
        raise ValueError(f"training.prior.attention_levels: {attention} must be between 1 and the number of "
                         f"block_out_channels ({levels})")
    return UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=("DownBlock2D",) * (levels - attention) + ("AttnDownBlock2D",) * attention,
        up_block_types=("AttnUpBlock2D",) * attention + ("UpBlock2D",) * (levels - attention),
        norm_num_groups=8,
        attention_head_dim=min(32, *cfg["block_out_channels"][-attention:]),
    )


def min_snr_weights(scheduler: DDPMScheduler, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample weights min(SNR, gamma) / (SNR + 1) of a v-prediction loss (Min-SNR-gamma).

    The v-loss equals the clean-image error weighted by SNR + 1; these weights turn that into
    min(SNR, gamma), so timesteps past SNR = gamma stop outweighing the noisy ones that decide shapes.
    """
    snr = compute_snr(scheduler, t)
    return snr.clamp(max=gamma) / (snr + 1)


def build_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")


def train_prior(images: np.ndarray, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Train on (N, H, W, 3) uint8 images; save unet/ and scheduler/ with save_pretrained; return metrics."""
    generator = seed_everything(cfg["seed"])
    device = resolve_device(device_name)
    unet = build_unet(images.shape[1], cfg).to(device)
    return fit_prior(unet, images, first_stage(cfg), device, generator, out_dir, "train prior")


def refine_prior(images: np.ndarray, base_dir: str | Path, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Second stage: fine-tune a trained prior with `cfg["refine"]`'s noise offset, steps and learning rate.

    Offset noise from scratch cost this small UNet its shapes; started from the white-noise prior, which
    already draws them, it only has to learn where the mean colour comes from (offset noise itself was
    introduced as a fine-tune of Stable Diffusion). Batch size, EMA, loss weighting and dtype are stage 1's.
    """
    stage = {**first_stage(cfg), **cfg["refine"]}
    generator = seed_everything(stage["seed"])
    device = resolve_device(device_name)
    unet = UNet2DModel.from_pretrained(Path(base_dir) / "unet", low_cpu_mem_usage=False).to(device)
    return {"base": Path(base_dir).name, **fit_prior(unet, images, stage, device, generator, out_dir, "refine prior")}


def fit_prior(unet: UNet2DModel, images: np.ndarray, stage: dict, device: torch.device, generator: torch.Generator,
              out_dir: str | Path, desc: str) -> dict:
    """One training stage of the v-prediction loss on `stage`'s noise; saves the EMA weights and the scheduler."""
    data = to_tensor(images).mul_(2).sub_(1)
    scheduler = build_scheduler()
    dtype_name = stage.get("dtype", "float32")
    compute_dtype = resolve_dtype("training.prior.dtype", dtype_name, device)
    unet.train()
    ema = EMAModel(unet.parameters(), decay=stage["ema_decay"], use_ema_warmup=True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=stage["learning_rate"], weight_decay=0.0)
    gamma = stage.get("min_snr_gamma")
    noise_offset = stage.get("noise_offset", 0.0)
    if noise_offset:  # recorded so that samplers draw the noise the model was trained on
        scheduler.register_to_config(noise_offset=noise_offset)
    clock, losses = Stopwatch(), []
    progress = tqdm(range(stage["steps"]), desc=desc, mininterval=5)
    for step in progress:
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, stage["steps"], stage["learning_rate"])
        index = torch.randint(len(data), (stage["batch_size"],), generator=generator)
        clean = data[index].to(device)
        noise = offset_noise(clean.shape, noise_offset, generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),), generator=generator).to(device)
        with autocast(device, compute_dtype):
            prediction = unet(scheduler.add_noise(clean, noise, t), t).sample
        error = F.mse_loss(prediction.float(), scheduler.get_velocity(clean, noise, t), reduction="none").mean((1, 2, 3))
        loss = (error * min_snr_weights(scheduler, t, gamma) if gamma else error).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        ema.step(unet.parameters())
        losses.append(loss.item())
        if step % 50 == 0:
            progress.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    ema.copy_to(unet.parameters())
    out = Path(out_dir)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    return {
        "parameters": sum(p.numel() for p in unet.parameters()),
        "steps": stage["steps"],
        "batch_size": stage["batch_size"],
        "final_loss": float(np.mean(losses[-100:])),
        "seconds": clock.seconds(),
        "device": str(device),
        "dtype": str(compute_dtype).removeprefix("torch."),
        "min_snr_gamma": gamma,
        "noise_offset": noise_offset,
    }


def sample_prior(prior_dir: str | Path, n: int, num_steps: int, seed: int, device_name: str = "auto") -> np.ndarray:
    """Unconditional samples from a saved prior, (n, H, W, 3) uint8, drawn the way the pipeline draws its
    reference set (same prior class, DDIM schedule and sampler), so the evaluation scores what the sets see."""
    prior = PixelDiffusionPrior.from_pretrained(prior_dir).to(resolve_device(device_name))
    return to_uint8(reference_set(prior, n, seed, num_steps).images)


def evaluate_prior(prior_dir: str | Path, oracle_dir: str | Path, spec: WorldSpec, n: int, num_steps: int,
                   device_name: str = "auto") -> tuple[dict, np.ndarray]:
    """Fraction of samples the oracle calls valid, and attribute frequencies against the world's.

    Returns the metrics and the samples, (n, H, W, 3) uint8.
    """
    samples = sample_prior(prior_dir, n, num_steps, seed=0, device_name=device_name)
    metrics = {"samples": n, "sampling_steps": num_steps, **oracle_scores(samples, load_oracle(oracle_dir), spec)}
    return metrics, samples


def oracle_scores(samples: np.ndarray, oracle: torch.nn.Module, spec: WorldSpec) -> dict:
    """The oracle's reading of unconditional samples, (n, H, W, 3) uint8: the fraction it calls valid, and the
    total variation of each attribute's frequencies among the valid ones from the unbiased split's."""
    predicted = read_attributes(oracle, to_tensor(samples), spec.shapes)
    valid = predicted["valid"] == "valid"
    reference = {name: value_probabilities(spec, "unbiased", spec.shapes[0], name) for name in CATEGORICAL}
    reference["shape"] = np.full(len(spec.shapes), 1 / len(spec.shapes))
    distances = attribute_distance(predicted[valid], reference, spec.shapes)
    return {
        "valid_fraction": float(valid.mean()),
        "total_variation": distances,
        "max_total_variation": max(distances.values()),
    }
