"""Loaders for the models preimage explains or measures with, from local files or the Hugging Face cache."""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "classifier": ["load_classifier", "wrap_classifier"],
        "clip": ["ClipModel", "load_clip"],
        "errors": ["CorruptWeightsError", "MissingWeightsError"],
        "perceptual": ["Lpips", "load_lpips"],
    },
)
