"""An SDXL-class latent prior (SDXL, SDXL-Turbo): two text encoders, pooled text and size conditioning.

Everything but the conditioning is the Stable-Diffusion latent prior: the VAE latent, the DDIM walk, classifier-free
guidance. SDXL's UNet ("text_time" addition embedding) also takes the pooled embedding of the second text encoder
and six size ids (original size, crop corner, target size); these follow diffusers' StableDiffusionXLPipeline
exactly, so a prior built here denoises like the pipeline would.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    UNet2DConditionModel,
)
from torch import Tensor
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from preimage.engine.priors.base import ddim_from_config
from preimage.engine.priors.latent import (
    LatentDiffusionPrior,
    load_component,
    load_scheduler,
    load_tokenizer,
    pipeline_components,
)


class SdxlDiffusionPrior(LatentDiffusionPrior):
    """A latent prior conditioned like SDXL: token embeddings of both encoders, pooled text and size ids.

    `condition` (and a `predict(condition=...)` override, e.g. an optimised prompt embedding) is the
    (1 or B, L, D1 + D2) token embedding; the pooled embedding and size ids always come from `prompt`.
    With cfg_scale > 1 an empty negative prompt is an all-zero embedding when `zero_empty_negative` (the
    pipeline's `force_zeros_for_empty_prompt`, True for SDXL and SDXL-Turbo).
    """

    ADDITION_EMBED_TYPE = "text_time"

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        text_encoder_2: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
        tokenizer_2: CLIPTokenizer,
        scheduler: DDIMScheduler,
        prompt: str = "",
        negative_prompt: str = "",
        cfg_scale: float = 0.0,
        zero_empty_negative: bool = True,
    ) -> None:
        # set before the base class encodes the prompt, which needs both encoders
        self.text_encoder_2 = text_encoder_2.eval().requires_grad_(False)
        self.tokenizer_2 = tokenizer_2
        self.zero_empty_negative = zero_empty_negative
        super().__init__(vae, unet, text_encoder, tokenizer, scheduler, prompt, negative_prompt, cfg_scale)
        _check_added_embedding(unet, text_encoder_2)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        prompt: str = "",
        negative_prompt: str = "",
        cfg_scale: float = 0.0,
        timestep_spacing: str = "trailing",
        dtype: torch.dtype = torch.float32,
    ) -> SdxlDiffusionPrior:
        """Load a `StableDiffusionXLPipeline.save_pretrained` directory offline, from safetensors only.

        A VAE whose config sets `force_upcast` (SDXL's overflows in float16) is kept in float32, as the pipeline does.
        """
        path = Path(path)
        upcast = AutoencoderKL.load_config(path, subfolder="vae", local_files_only=True).get("force_upcast", True)
        vae_dtype = torch.float32 if upcast and dtype == torch.float16 else dtype
        return cls(
            load_component(AutoencoderKL, path, "vae", vae_dtype),
            load_component(UNet2DConditionModel, path, "unet", dtype),
            load_component(CLIPTextModel, path, "text_encoder", dtype),
            load_component(CLIPTextModelWithProjection, path, "text_encoder_2", dtype),
            load_tokenizer(path, "tokenizer"),
            load_tokenizer(path, "tokenizer_2"),
            load_scheduler(path, timestep_spacing),
            prompt,
            negative_prompt,
            cfg_scale,
            _pipeline_config(path).get("force_zeros_for_empty_prompt", True),
        )

    @classmethod
    def from_pipeline(
        cls,
        pipe: DiffusionPipeline,
        prompt: str = "",
        negative_prompt: str = "",
        cfg_scale: float = 0.0,
        timestep_spacing: str = "trailing",
    ) -> SdxlDiffusionPrior:
        """A prior from a `StableDiffusionXLPipeline` already loaded with diffusers, sharing its modules (no copy;
        they are set to eval mode and frozen) in their dtype and device, and its `force_zeros_for_empty_prompt`;
        its scheduler becomes DDIM on the same training schedule, as `from_pretrained` makes it. A float16 VAE
        whose config sets `force_upcast` is moved to float32 (the pipeline's too), as `from_pretrained` loads it."""
        names = ("vae", "unet", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
        parts = pipeline_components(pipe, names, cls.__name__)
        if parts["vae"].dtype == torch.float16 and parts["vae"].config.get("force_upcast", True):
            parts["vae"].to(torch.float32)
        scheduler = ddim_from_config(parts.pop("scheduler").config, timestep_spacing)
        zero_empty_negative = getattr(pipe, "config", {}).get("force_zeros_for_empty_prompt", True)
        return cls(**parts, scheduler=scheduler, prompt=prompt, negative_prompt=negative_prompt, cfg_scale=cfg_scale,
                   zero_empty_negative=zero_empty_negative)

    def set_prompt(self, prompt: str, negative_prompt: str = "") -> None:
        """Condition on `prompt`; an empty negative prompt is all zeros when `zero_empty_negative`."""
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self._condition, self._pooled = self.encode_text(prompt)
        if negative_prompt == "" and self.zero_empty_negative:
            self._negative, self._negative_pooled = torch.zeros_like(self._condition), torch.zeros_like(self._pooled)
        else:
            self._negative, self._negative_pooled = self.encode_text(negative_prompt)
        self._time_ids = self._size_ids()

    def encode_prompt(self, prompt: str) -> Tensor:
        """The (1, L, D1 + D2) token embedding the UNet cross-attends to."""
        return self.encode_text(prompt)[0]

    @torch.no_grad()
    def encode_text(self, prompt: str) -> tuple[Tensor, Tensor]:
        """Token embeddings (1, L, D1 + D2), both encoders' penultimate layers, and pooled text (1, P), the
        projection of encoder 2."""
        first = _encode(self.tokenizer, self.text_encoder, prompt)
        second = _encode(self.tokenizer_2, self.text_encoder_2, prompt)
        embedding = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return embedding.to(self.text_encoder_2.dtype), second.text_embeds

    def _size_ids(self) -> Tensor:
        """(1, 6) ids: original size, crop corner (0, 0), target size; all the prior's square image size."""
        side, like = self.image_size, self._condition
        return torch.tensor([[side, side, 0, 0, side, side]], dtype=like.dtype, device=like.device)

    def _added_conditions(self, batch: int, guided: bool) -> dict[str, Tensor]:
        pooled = self._pooled.expand(batch, -1)
        if guided:
            pooled = torch.cat([self._negative_pooled.expand(batch, -1), pooled])
        return {"text_embeds": pooled, "time_ids": self._time_ids.expand(len(pooled), -1)}

    def to(self, device: str | torch.device) -> SdxlDiffusionPrior:
        super().to(device)
        self.text_encoder_2.to(device)
        self._pooled, self._negative_pooled = self._pooled.to(device), self._negative_pooled.to(device)
        self._time_ids = self._time_ids.to(device)
        return self


def _encode(tokenizer: CLIPTokenizer, encoder: CLIPTextModel | CLIPTextModelWithProjection, prompt: str):
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    return encoder(ids.to(encoder.device), output_hidden_states=True)


def _check_added_embedding(unet: UNet2DConditionModel, text_encoder_2: CLIPTextModelWithProjection) -> None:
    """The UNet's added embedding must take 6 size ids plus encoder 2's pooled projection, as in the pipeline."""
    expected = unet.config.projection_class_embeddings_input_dim
    given = 6 * unet.config.addition_time_embed_dim + text_encoder_2.config.projection_dim
    if expected != given:
        raise ValueError(
            f"unet.config.projection_class_embeddings_input_dim={expected} must equal 6 * addition_time_embed_dim "
            f"({unet.config.addition_time_embed_dim}) + text_encoder_2.config.projection_dim "
            f"({text_encoder_2.config.projection_dim}) = {given}"
        )


def _pipeline_config(path: Path) -> dict:
    index = path / "model_index.json"
    return json.loads(index.read_text()) if index.is_file() else {}
