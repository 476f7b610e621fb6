"""A latent diffusion prior: Stable-Diffusion-class components conditioned on a text prompt."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    UNet2DConditionModel,
)
from torch import Tensor
from transformers import CLIPTextModel, CLIPTokenizer

from preimage.engine.models.errors import reading_weights, weight_files
from preimage.engine.priors.base import DiffusionPrior, ddim_from_config
from preimage.engine.priors.pixel import square_side
from preimage.utils.devices import module_device, module_dtype

Model = TypeVar("Model")


class LatentDiffusionPrior(DiffusionPrior):
    """Diffusion on a VAE latent, conditioned on a prompt embedding, with optional classifier-free guidance.

    z is the VAE latent scaled by the VAE's scaling_factor (unit variance, as the UNet was trained on).
    cfg_scale > 1 turns on classifier-free guidance against `negative_prompt` (diffusers' convention); few-step
    distilled models (SD-Turbo) are sampled without it (cfg_scale 0).
    """

    # The UNet's `addition_embed_type` this prior feeds; SDXL-class UNets also need pooled text and size ids.
    ADDITION_EMBED_TYPE: str | None = None

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        scheduler: DDIMScheduler,
        prompt: str = "",
        negative_prompt: str = "",
        cfg_scale: float = 0.0,
    ) -> None:
        super().__init__(scheduler)
        if unet.config.addition_embed_type != self.ADDITION_EMBED_TYPE:
            raise ValueError(
                f"{type(self).__name__} needs a UNet with addition_embed_type={self.ADDITION_EMBED_TYPE!r}, got "
                f"{unet.config.addition_embed_type!r} (SDXL-class UNets take 'text_time': use SdxlDiffusionPrior)"
            )
        if vae.config.latent_channels != unet.config.in_channels:
            raise ValueError(
                f"vae.config.latent_channels={vae.config.latent_channels} must equal "
                f"unet.config.in_channels={unet.config.in_channels}"
            )
        if cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0 (> 1 enables classifier-free guidance), got {cfg_scale}")
        self.vae = vae.eval().requires_grad_(False)
        self.unet = unet.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.cfg_scale = float(cfg_scale)
        self._side = square_side(unet.config.sample_size, "unet.config")
        self._vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.set_prompt(prompt, negative_prompt)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        prompt: str = "",
        negative_prompt: str = "",
        cfg_scale: float = 0.0,
        timestep_spacing: str = "trailing",
        dtype: torch.dtype = torch.float32,
    ) -> LatentDiffusionPrior:
        """Load a `StableDiffusionPipeline.save_pretrained` directory offline, from safetensors only."""
        path = Path(path)
        return cls(
            load_component(AutoencoderKL, path, "vae", dtype),
            load_component(UNet2DConditionModel, path, "unet", dtype),
            load_component(CLIPTextModel, path, "text_encoder", dtype),
            load_tokenizer(path, "tokenizer"),
            load_scheduler(path, timestep_spacing),
            prompt,
            negative_prompt,
            cfg_scale,
        )

    @classmethod
    def from_pipeline(
        cls,
        pipe: DiffusionPipeline,
        prompt: str = "",
        negative_prompt: str = "",
        cfg_scale: float = 0.0,
        timestep_spacing: str = "trailing",
    ) -> LatentDiffusionPrior:
        """A prior from a `StableDiffusionPipeline` already loaded with diffusers, sharing its modules (no copy;
        they are set to eval mode and frozen) in their dtype and device; its scheduler becomes DDIM on the same
        training schedule, as `from_pretrained` makes it."""
        parts = pipeline_components(pipe, ("vae", "unet", "text_encoder", "tokenizer", "scheduler"), cls.__name__)
        scheduler = ddim_from_config(parts.pop("scheduler").config, timestep_spacing)
        return cls(**parts, scheduler=scheduler, prompt=prompt, negative_prompt=negative_prompt, cfg_scale=cfg_scale)

    def set_prompt(self, prompt: str, negative_prompt: str = "") -> None:
        """Condition on `prompt` (and guide away from `negative_prompt` when cfg_scale > 1)."""
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self._condition = self.encode_prompt(prompt)
        self._negative = self.encode_prompt(negative_prompt)

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> Tensor:
        """The (1, L, D) text embedding the UNet cross-attends to."""
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def describe(self) -> dict:
        prompting = {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "cfg_scale": self.cfg_scale}
        return {**super().describe(), **prompting}

    @property
    def condition(self) -> Tensor:
        return self._condition

    @property
    def image_size(self) -> int:
        return self._side * self._vae_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.unet.config.in_channels, self._side, self._side)

    @property
    def device(self) -> torch.device:
        return module_device(self.unet)

    @property
    def dtype(self) -> torch.dtype:
        return module_dtype(self.unet)

    @property
    def _shift(self) -> float:
        return getattr(self.vae.config, "shift_factor", None) or 0.0

    def encode(self, images: Tensor) -> Tensor:
        """The VAE posterior mode (not a sample), so encoding is deterministic."""
        posterior = self.vae.encode(images.to(self.device, self.vae.dtype) * 2 - 1).latent_dist
        return ((posterior.mode() - self._shift) * self.vae.config.scaling_factor).to(self.dtype)

    def decode(self, z: Tensor) -> Tensor:
        latents = z.to(self.vae.dtype) / self.vae.config.scaling_factor + self._shift
        return ((self.vae.decode(latents).sample.float() + 1) / 2).clamp(0, 1)

    def predict(self, z_t: Tensor, t: int | Tensor, condition: Tensor | None = None) -> Tensor:
        """UNet output for `condition` (the prompt's embedding by default; (1 or B, L, D))."""
        batch = z_t.shape[0]
        condition = self._per_member(self._condition if condition is None else condition, batch)
        if self.cfg_scale <= 1:
            added = self._added_conditions(batch, guided=False)
            return self.unet(z_t, int(t), encoder_hidden_states=condition, added_cond_kwargs=added).sample
        negative = self._per_member(self._negative, batch)
        both = self.unet(
            torch.cat([z_t, z_t]),
            int(t),
            encoder_hidden_states=torch.cat([negative, condition]),
            added_cond_kwargs=self._added_conditions(batch, guided=True),
        )
        unconditional, conditional = both.sample.chunk(2)
        return unconditional + self.cfg_scale * (conditional - unconditional)

    def _added_conditions(self, batch: int, guided: bool) -> dict[str, Tensor] | None:
        """UNet inputs besides the prompt embedding, for `batch` members (negative half first when guided).

        SD 1.x/2.x UNets take none; SDXL-class priors add pooled text embeddings and size ids here.
        """
        return None

    @staticmethod
    def _per_member(embedding: Tensor, batch: int) -> Tensor:
        if embedding.ndim != 3 or embedding.shape[0] not in (1, batch):
            raise ValueError(f"condition must have shape (1 or {batch}, L, D), got {tuple(embedding.shape)}")
        return embedding.expand(batch, -1, -1)

    def to(self, device: str | torch.device) -> LatentDiffusionPrior:
        for module in (self.vae, self.unet, self.text_encoder):
            module.to(device)
        self._condition = self._condition.to(device)
        self._negative = self._negative.to(device)
        return self


def pipeline_components(pipe: DiffusionPipeline, names: tuple[str, ...], prior: str) -> dict[str, object]:
    """The named components of a loaded diffusers pipeline, or an error naming those it lacks."""
    parts = {name: getattr(pipe, name, None) for name in names}
    missing = [name for name, part in parts.items() if part is None]
    if missing:
        raise TypeError(f"pipe: {prior}.from_pipeline needs a diffusers pipeline with components {list(names)}; "
                        f"the {type(pipe).__name__} given lacks {missing}")
    return parts


def load_component(cls: type[Model], path: Path, subfolder: str, dtype: torch.dtype) -> Model:
    """One diffusers/transformers model of a saved pipeline, offline and from safetensors only (no unpickling);
    a truncated or corrupt weights file raises naming it."""
    with reading_weights(weight_files(Path(path) / subfolder, (".safetensors",))):
        return cls.from_pretrained(
            path, subfolder=subfolder, local_files_only=True, use_safetensors=True, torch_dtype=dtype
        )


def load_tokenizer(path: Path, subfolder: str) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(path, subfolder=subfolder, local_files_only=True)


def load_scheduler(path: Path, timestep_spacing: str) -> DDIMScheduler:
    """A DDIM scheduler on the pipeline's own training schedule (whatever scheduler class it ships)."""
    config = DDIMScheduler.load_config(path, subfolder="scheduler", local_files_only=True)
    return ddim_from_config(config, timestep_spacing)
