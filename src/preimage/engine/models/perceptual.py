"""LPIPS distances and embeddings from local weights only, for realism and diversity measures.

The `lpips` package would download torchvision backbone weights and unpickle its linear layers with a
plain `torch.load`. Here the backbone is built random (`pnet_rand=True`) and then filled from a
local torchvision state dict, and the linear layers (which ship inside the lpips package) are read
with `torch.load(weights_only=True)`.

Where the backbone comes from, in order: `backbone_file`; torchvision's own cache file
(`$TORCH_HOME/hub/checkpoints/<name>.pth`, where `torchvision.models.alexnet(weights=...)` puts it);
otherwise a `MissingWeightsError`, unless `allow_random=True` (tests only: a random backbone gives a
well-defined but perceptually meaningless distance).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import torch
import torch.nn.functional as F
from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

from preimage.engine.models.errors import MissingWeightsError, reading_weights
from preimage.engine.models.preprocess import check_images

# LPIPS net name -> (torchvision builder, torchvision ImageNet weights) of its backbone.
BACKBONES = {
    "alex": ("alexnet", AlexNet_Weights.IMAGENET1K_V1),
    "vgg": ("vgg16", VGG16_Weights.IMAGENET1K_V1),
    "squeeze": ("squeezenet1_1", SqueezeNet1_1_Weights.IMAGENET1K_V1),
}
LINEAR_VERSION = "0.1"
TORCH_CACHE_HINT = (
    "then copy $TORCH_HOME/hub/checkpoints/<file> (default ~/.cache/torch/hub/checkpoints) to the same place "
    "on this machine, or pass backbone_file=<that file>."
)


class Lpips(torch.nn.Module):
    """LPIPS on [0, 1] images: `forward(a, b)` gives (B,) distances, `embed(x)` (B, D) vectors.

    `embed` is exact: ||embed(a) - embed(b)||^2 == forward(a, b), because LPIPS is a weighted squared
    distance between unit-normalised features with non-negative weights. Diversity over N images then
    costs N forward passes and one `torch.cdist` instead of N^2 LPIPS calls.

    Images smaller than `min_size` on either side are first upsampled (bilinear) to min_size x min_size, in
    both `forward` and `embed` (so `embed` stays exact): AlexNet's stride-4 stem and pools shrink a 32 x 32
    image to 1 x 1 from its third LPIPS layer on, where the distance no longer means anything perceptual.
    """

    def __init__(self, metric: lpips.LPIPS, min_size: int = 64) -> None:
        super().__init__()
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}")
        self.metric = metric
        self.min_size = min_size

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        if min(images.shape[-2:]) >= self.min_size:
            return images
        size = (self.min_size, self.min_size)
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        check_images(a, "a")
        check_images(b, "b")
        return self.metric(self._resized(a), self._resized(b), normalize=True).flatten()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        features = self.metric.net(self.metric.scaling_layer(2 * self._resized(images) - 1))
        parts = []
        for feature, linear in zip(features, self.metric.lins):
            weight = linear.model[-1].weight.view(1, -1, 1, 1)
            height, width = feature.shape[-2:]
            unit = lpips.normalize_tensor(feature)
            parts.append((weight.sqrt() * unit / (height * width) ** 0.5).flatten(1))
        return torch.cat(parts, dim=1)


def load_lpips(
    net: str = "alex",
    *,
    backbone_file: str | Path | None = None,
    linear_file: str | Path | None = None,
    allow_random: bool = False,
    min_size: int = 64,
    device: str | torch.device = "cpu",
) -> Lpips:
    """Frozen LPIPS v0.1 with an `alex`, `vgg` or `squeeze` backbone (see the module doc for look-up).

    `backbone_file` is a torchvision state dict of that backbone (keys "features.N.weight", ...);
    `linear_file` defaults to the lpips package's own `weights/v0.1/<net>.pth`; smaller images are
    upsampled to `min_size` first (see `Lpips`).
    """
    if net not in BACKBONES:
        raise ValueError(f"net={net!r}: expected one of {list(BACKBONES)}")
    # A fixed seed for the initialisation: a random trunk (allow_random) is then the same in every process,
    # whatever the caller drew before, so distances and diversity are reproducible. The warning filter
    # hides torchvision's deprecation of the `pretrained=` argument that lpips passes.
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore", UserWarning)
        torch.manual_seed(0)
        metric = lpips.LPIPS(pretrained=False, net=net, version=LINEAR_VERSION, pnet_rand=True, verbose=False)
    backbone = _backbone_path(net, backbone_file, allow_random)
    if backbone is not None:
        _load_backbone(metric.net, backbone, net)
    _load_linear(metric, Path(linear_file) if linear_file is not None else _packaged_linear(net))
    return Lpips(metric, min_size=min_size).eval().requires_grad_(False).to(device)


def _backbone_path(net: str, backbone_file: str | Path | None, allow_random: bool) -> Path | None:
    builder, weights = BACKBONES[net]
    fetch = _backbone_fetch(net)
    if backbone_file is not None:
        path = Path(backbone_file)
        if not path.is_file():
            raise MissingWeightsError(f"LPIPS {net} backbone", [str(path)], fetch, hint=TORCH_CACHE_HINT)
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return cached
    if allow_random:
        return None
    raise MissingWeightsError(
        f"LPIPS {net} backbone (torchvision {builder})",
        [str(cached)],
        fetch,
        hint=TORCH_CACHE_HINT + " allow_random=True (tests only) uses a random backbone instead.",
    )


def _backbone_fetch(net: str) -> str:
    """The command that puts torchvision's ImageNet weights of `net`'s backbone into the torch cache."""
    builder, weights = BACKBONES[net]
    return f"python -c \"import torchvision; torchvision.models.{builder}(weights='{weights.name}')\""


def _load_backbone(backbone: torch.nn.Module, path: Path, net: str) -> None:
    """Copy torchvision "features.N.*" tensors into lpips' slices, which keep torchvision's indices N."""
    with reading_weights([path], _backbone_fetch(net), trainable=False):
        state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = {}
    for key in backbone.state_dict():
        source = "features." + key.split(".", 1)[1]  # "slice2.3.weight" -> "features.3.weight"
        if source not in state:
            raise ValueError(f"backbone_file {str(path)!r}: missing {source!r}; expected a torchvision state dict")
        renamed[key] = state[source]
    backbone.load_state_dict(renamed, strict=True)


def _packaged_linear(net: str) -> Path:
    return Path(lpips.__file__).parent / "weights" / f"v{LINEAR_VERSION}" / f"{net}.pth"


def _load_linear(metric: lpips.LPIPS, path: Path) -> None:
    if not path.is_file():
        raise MissingWeightsError(f"LPIPS {metric.pnet_type} linear layers", [str(path)], "pip install --force-reinstall lpips")
    with reading_weights([path], "pip install --force-reinstall lpips", trainable=False):
        state = torch.load(path, map_location="cpu", weights_only=True)
    expected = {f"lin{k}.model.1.weight" for k in range(len(metric.lins))}
    if set(state) != expected:
        raise ValueError(f"linear_file {str(path)!r}: keys {sorted(state)}; expected {sorted(expected)}")
    for k, linear in enumerate(metric.lins):
        linear.model[-1].load_state_dict({"weight": state[f"lin{k}.model.1.weight"]})
    if any((linear.model[-1].weight < 0).any() for linear in metric.lins):
        raise ValueError(f"linear_file {str(path)!r}: LPIPS weights must be non-negative")
