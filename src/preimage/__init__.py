"""preimage: explain vision models by sampling their invariant sets with a diffusion prior.

`preimage.sample(objective, source, prior, sampler, n)` samples one set, `write_set` / `read_set` store and
read it (see `preimage.engine.sets`); `load_image(path, size)` reads a source image from a file.

Packages load their submodules on first use (lazy_loader), so `from preimage.engine.models import load_clip` does not
import timm and lpips as well: every Snakemake job is a new process, and each of diffusers, timm, open_clip,
lpips and scikit-learn costs it a second or more to import.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__, submod_attrs={"utils.images": ["load_image"], "engine.sets": ["read_set", "sample", "write_set"]}
)
