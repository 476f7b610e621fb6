"""Samplers that draw members of an objective's invariant (or counterfactual) set from a diffusion prior."""

from preimage.samplers.base import ObjectiveLike, Sampler, SampleResult
from preimage.samplers.diversity import (
    PixelFeatures,
    farthest_point_subset,
    pairwise_sq_distances,
    repulsion_loss,
)
from preimage.samplers.guided import GuidedSampler
from preimage.samplers.noise_opt import NoiseOptSampler
from preimage.samplers.rejection import RejectionSampler

__all__ = [
    "GuidedSampler",
    "NoiseOptSampler",
    "ObjectiveLike",
    "PixelFeatures",
    "RejectionSampler",
    "SampleResult",
    "Sampler",
    "farthest_point_subset",
    "pairwise_sq_distances",
    "repulsion_loss",
]
