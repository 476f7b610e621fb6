"""Diffusion priors: one interface over pixel-space and latent (Stable-Diffusion-class) models."""

from preimage.priors.base import DiffusionPrior
from preimage.priors.latent import LatentDiffusionPrior
from preimage.priors.pixel import PixelDiffusionPrior

__all__ = ["DiffusionPrior", "LatentDiffusionPrior", "PixelDiffusionPrior"]
