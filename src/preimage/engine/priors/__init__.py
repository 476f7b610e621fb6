"""Diffusion priors: one interface over pixel-space and latent (Stable-Diffusion-class, SDXL-class) models."""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": ["DiffusionPrior"],
        "latent": ["LatentDiffusionPrior"],
        "pixel": ["PixelDiffusionPrior"],
        "sdxl": ["SdxlDiffusionPrior"],
    },
)
