"""preimage: explain vision models by sampling their invariant sets with a diffusion prior.

`preimage.sample(objective, source, prior, sampler, n)` samples one set; see `preimage.sets`.
"""

from typing import Any

__all__ = ["sample"]


def __getattr__(name: str) -> Any:
    """Import the sampling API lazily, so light modules (config, world) load without torch's weight."""
    if name == "sample":
        from preimage.sets import sample

        return sample
    raise AttributeError(f"module 'preimage' has no attribute {name!r}")
