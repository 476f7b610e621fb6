"""Meaningful diversity: repel batch members in a feature space, pick a spread-out subset of a pool.

Following Cohen et al. 2024 ("Looks too good to be true"), diversity is measured in a feature space where
distance means a perceptible difference (LPIPS, CLIP), not in raw pixels. A feature space is any callable
images (B, 3, H, W) in [0, 1] -> (B, D) whose Euclidean distances are the meaningful ones: `PixelFeatures`
here, or `preimage.engine.models.load_lpips(...).embed`, whose squared distances are exactly LPIPS.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FeatureSpace = Callable[[Tensor], Tensor]


class PixelFeatures(nn.Module):
    """Pixels downsampled to size x size and flattened: a cheap feature space that ignores fine noise."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(images, self.size).flatten(1)


def pairwise_sq_distances(features: Tensor) -> Tensor:
    """(B, B) squared Euclidean distances between rows of (B, D) features; the diagonal is exactly 0."""
    if features.ndim != 2:
        raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: memory O(B^2 + B D), where the (B, B, D) difference tensor took
    # half a gigabyte (and its backward as much again) for 64 LPIPS embeddings.
    norms = features.pow(2).sum(1)
    distances = (norms[:, None] + norms[None, :] - 2 * features @ features.T).clamp(min=0)
    return distances * (1 - torch.eye(len(features), dtype=features.dtype, device=features.device))


def repulsion_loss(features: Tensor) -> Tensor:
    """Per-member (B,) mean RBF similarity to the other members; descending it pushes members apart.

    The bandwidth is the median heuristic of SVGD / particle guidance (Liu & Wang 2016, Corso et al. 2023),
    detached, so the loss is scale-free in the feature space and stays bounded in [0, 1].
    """
    n = features.shape[0]
    if n < 2:
        return features.new_zeros(n)
    distances = pairwise_sq_distances(features)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=features.device)
    bandwidth = distances[off_diagonal].median().detach() / math.log(n) + 1e-12
    kernel = torch.exp(-distances / bandwidth) * off_diagonal
    return kernel.sum(1) / (n - 1)


def farthest_point_subset(features: Tensor, k: int, first: int = 0) -> Tensor:
    """Indices of k rows picked greedily, each the farthest from those already picked (k-center greedy).

    Over-generate a pool, then keep this subset: it covers the pool's spread rather than its dense modes.
    `first` is the row to start from (e.g. the source, or the best-scoring member).
    """
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the number of rows), got {k}")
    if not 0 <= first < n:
        raise ValueError(f"first must index a row in [0, {n}), got {first}")
    features = features.detach().float()
    picked = [first]
    nearest = (features - features[first]).pow(2).sum(1)
    nearest[first] = -1.0
    for _ in range(k - 1):
        index = int(nearest.argmax())
        picked.append(index)
        nearest = torch.minimum(nearest, (features - features[index]).pow(2).sum(1))
        nearest[picked] = -1.0
    return torch.tensor(picked, dtype=torch.long)
