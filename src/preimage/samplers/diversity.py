"""Meaningful diversity: repel batch members in a feature space, pick a spread-out subset of a pool.

Following Cohen et al. 2024 ("Looks too good to be true"), diversity is measured in a feature space where
distance means a perceptible difference (LPIPS, CLIP), not in raw pixels. A feature space is any callable
images (B, 3, H, W) in [0, 1] -> (B, D) whose Euclidean distances are the meaningful ones.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable

import lpips
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

FeatureSpace = Callable[[Tensor], Tensor]

LPIPS_NETS = ("alex", "vgg", "squeeze")


class PixelFeatures(nn.Module):
    """Pixels downsampled to size x size and flattened: a cheap feature space that ignores fine noise."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size

    def forward(self, images: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(images, self.size).flatten(1)


class LpipsFeatures(nn.Module):
    """An embedding whose squared Euclidean distance is exactly the LPIPS distance (Zhang et al. 2018).

    LPIPS is sum_l mean_hw sum_c w_lc (n0 - n1)^2 over unit-normalised trunk features n; scaling each
    normalised feature by sqrt(w_lc / (H_l W_l)) and concatenating turns it into a plain squared distance, so
    repulsion and farthest-point selection can work with features. The linear weights ship with the lpips
    package; the trunk's ImageNet weights must be given as a local safetensors file holding torchvision's
    `<net>(weights=...).features.state_dict()` (keys "0.weight", "3.weight", ...), since nothing is downloaded.
    """

    def __init__(self, trunk_weights: str | os.PathLike, net: str = "alex", size: int = 64) -> None:
        """Images are resized to size x size first: the trunks need at least 32 pixels."""
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"net must be one of {LPIPS_NETS}, got {net!r}")
        if size < 32:
            raise ValueError(f"size must be >= 32 for the LPIPS trunks, got {size}")
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained` flag
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        self.lpips.eval().requires_grad_(False)
        self._load_trunk(trunk_weights)
        self.size = size

    def _load_trunk(self, path: str | os.PathLike) -> None:
        """Map torchvision `features` keys ("3.weight") onto lpips' slices ("slice2.3.weight")."""
        weights = load_file(os.fspath(path))
        trunk = self.lpips.net
        mapped = {key: weights[key.split(".", 1)[1]] for key in trunk.state_dict() if key.split(".", 1)[1] in weights}
        missing = sorted(set(trunk.state_dict()) - set(mapped))
        if missing:
            raise ValueError(f"trunk_weights {os.fspath(path)!r} lacks torchvision feature keys for {missing}")
        trunk.load_state_dict(mapped)

    def forward(self, images: Tensor) -> Tensor:
        images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        outputs = self.lpips.net(self.lpips.scaling_layer(images * 2 - 1))
        parts = []
        for output, lin in zip(outputs, self.lpips.lins, strict=True):
            # the published linear weights are non-negative; the clamp only keeps sqrt defined
            weight = lin.model[-1].weight.clamp(min=0).view(1, -1, 1, 1)
            normalised = lpips.normalize_tensor(output)
            parts.append((normalised * weight.sqrt() / math.sqrt(output.shape[2] * output.shape[3])).flatten(1))
        return torch.cat(parts, dim=1)


def pairwise_sq_distances(features: Tensor) -> Tensor:
    """(B, B) squared Euclidean distances between rows of (B, D) features."""
    if features.ndim != 2:
        raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
    diff = features[:, None, :] - features[None, :, :]
    return diff.pow(2).sum(-1)


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
