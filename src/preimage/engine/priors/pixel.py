"""A pixel-space diffusion prior: a diffusers UNet2DModel denoising images in [-1, 1]."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from diffusers import DDIMScheduler, UNet2DModel
from torch import Tensor

from preimage.engine.models.errors import reading_weights, weight_files
from preimage.engine.priors.base import (
    DiffusionPrior,
    ddim_from_config,
    noise_offset_from_config,
)
from preimage.utils.devices import autocast, module_device, module_dtype

# On a CPU the UNet runs on chunks of a batch whose first-level activations (images x channels x pixels) stay
# within 2**20 floats, 4 MiB: 32 images for the world's prior, whose batches of 64 then took 18 % less time per
# image on an AMD EPYC without AVX-512, outputs bitwise equal (docs/benchmarks.md, "The UNet in chunks of 32 images").
CPU_CHUNK_ACTIVATIONS = 2**20


def square_side(sample_size: int | tuple[int, int] | list[int], where: str) -> int:
    """The side of a square sample_size; the pipeline's images are square."""
    if isinstance(sample_size, int):
        return sample_size
    height, width = sample_size
    if height != width:
        raise ValueError(f"{where}.sample_size must be square, got {tuple(sample_size)}")
    return int(height)


class PixelDiffusionPrior(DiffusionPrior):
    """Unconditional diffusion directly on pixels; z is the image mapped to [-1, 1].

    `compute_dtype` other than float32 runs only the UNet's forward under autocast: weights, states and the
    scheduler's arithmetic stay float32, so a 25-step trajectory does not accumulate half-precision rounding,
    while the convolutions get the 2x of bfloat16 matrix units (AMX on recent Xeons, tensor cores on GPUs).
    """

    def __init__(self, unet: UNet2DModel, scheduler: DDIMScheduler, compute_dtype: torch.dtype = torch.float32,
                 noise_offset: float = 0.0) -> None:
        super().__init__(scheduler, noise_offset)
        if unet.config.in_channels != 3 or unet.config.out_channels != 3:
            raise ValueError(
                f"a pixel prior's unet must map 3 to 3 channels, got "
                f"in_channels={unet.config.in_channels}, out_channels={unet.config.out_channels}"
            )
        # channels-last: oneDNN and cuDNN run the UNet's convolutions faster in that layout
        self.unet = unet.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self._side = square_side(unet.config.sample_size, "unet.config")
        self.compute_dtype = compute_dtype
        first_level = unet.config.block_out_channels[0] * self._side**2
        self.cpu_chunk = max(1, CPU_CHUNK_ACTIVATIONS // first_level)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, timestep_spacing: str = "trailing",
                        dtype: torch.dtype = torch.float32) -> PixelDiffusionPrior:
        """Load `path/unet` and `path/scheduler` (any diffusers scheduler config) offline, without unpickling;
        `dtype` is the UNet's compute dtype (autocast; weights stay float32).

        The scheduler config's `noise_offset`, written by the project's prior training, sets the noise drawn.
        """
        path = Path(path)
        # A small UNet gains nothing from accelerate's meta-device loading; asking for the plain path
        # also keeps diffusers from warning on every load that accelerate is missing.
        with reading_weights(weight_files(path / "unet", (".safetensors",))):
            unet = UNet2DModel.from_pretrained(path, subfolder="unet", use_safetensors=True, local_files_only=True,
                                               low_cpu_mem_usage=False)
        config = DDIMScheduler.load_config(path, subfolder="scheduler", local_files_only=True)
        return cls(unet, ddim_from_config(config, timestep_spacing), dtype, noise_offset_from_config(config))

    @property
    def image_size(self) -> int:
        return self._side

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (3, self._side, self._side)

    @property
    def device(self) -> torch.device:
        return module_device(self.unet)

    @property
    def dtype(self) -> torch.dtype:
        return module_dtype(self.unet)

    def encode(self, images: Tensor) -> Tensor:
        return (images.to(self.device, self.dtype) * 2 - 1).contiguous()

    def decode(self, z: Tensor) -> Tensor:
        return ((z + 1) / 2).clamp(0, 1)

    def predict(self, z_t: Tensor, t: int | Tensor, condition: Tensor | None = None) -> Tensor:
        if condition is not None:
            raise ValueError("PixelDiffusionPrior is unconditional; condition must be None")
        chunks = math.ceil(len(z_t) / self.cpu_chunk) if z_t.device.type == "cpu" else 1
        with autocast(self.device, self.compute_dtype):
            outputs = [self.unet(chunk, int(t)).sample for chunk in z_t.tensor_split(chunks)]
        return (outputs[0] if chunks == 1 else torch.cat(outputs)).to(z_t.dtype)

    def to(self, device: str | torch.device) -> PixelDiffusionPrior:
        self.unet.to(device)
        return self
