"""Samplers that draw members of an objective's invariant (or counterfactual) set from a diffusion prior."""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": ["ObjectiveLike", "SampleResult", "Sampler", "SamplerLike"],
        "cone": ["Cone", "cone_projection"],
        "diversity": ["PixelFeatures", "farthest_point_subset", "pairwise_sq_distances", "repulsion_loss"],
        "guided": ["GuidedSampler"],
        "noise_opt": ["NoiseOptSampler"],
        "rejection": ["DrawPool", "PooledRejectionSampler", "RejectionSampler"],
        "spec": ["from_config"],
    },
)
