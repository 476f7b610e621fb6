"""Diffusion priors: one interface over pixel-space and latent (Stable-Diffusion-class, SDXL-class) models."""

from preimage.priors.base import DiffusionPrior
from preimage.priors.latent import LatentDiffusionPrior
from preimage.priors.pixel import PixelDiffusionPrior
from preimage.priors.sdxl import SdxlDiffusionPrior

__all__ = ["DiffusionPrior", "LatentDiffusionPrior", "PixelDiffusionPrior", "SdxlDiffusionPrior"]
