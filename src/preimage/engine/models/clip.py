"""Load open_clip models from local folders, local checkpoints or the Hugging Face cache, never the network.

`ClipModel` encodes [0, 1] image tensors with open_clip's own resize/normalise settings done as
tensor operations, so image-space objectives can backpropagate through CLIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

from preimage.engine.models.errors import (
    OPEN_CLIP_FOLDER,
    MissingWeightsError,
    reading_weights,
    weight_files,
)
from preimage.engine.models.hub import (
    COPY_CACHE_HINT,
    cached_snapshot,
    download_command,
    snapshot_path,
)
from preimage.engine.models.preprocess import check_images, fit_to_size, normalise
from preimage.utils.devices import module_device

CONFIG_FILE = OPEN_CLIP_FOLDER.config_file
# Weight files open_clip's local-dir loader picks up, in its order of preference.
OPEN_CLIP_WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")
HUB_PREFIX = "hf-hub:"
DIR_PREFIX = "local-dir:"


class ClipModel(torch.nn.Module):
    """An open_clip model behind three calls: image embeddings, text embeddings, zero-shot probabilities."""

    def __init__(self, model: torch.nn.Module, tokenizer, preprocess_cfg: dict) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.preprocess_cfg = dict(preprocess_cfg)
        size = self.preprocess_cfg["size"]
        self.image_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised (B, D) embeddings of [0, 1] images of any size; differentiable."""
        check_images(images)
        cfg = self.preprocess_cfg
        images = fit_to_size(images, self.image_size, cfg["interpolation"], cfg["resize_mode"])
        features = self.model.encode_image(normalise(images, cfg["mean"], cfg["std"]))
        return F.normalize(features, dim=-1)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised (T, D) embeddings of texts."""
        if isinstance(texts, str) or not texts:
            raise ValueError(f"texts: expected a non-empty list of strings, got {texts!r}")
        tokens = self.tokenizer(list(texts)).to(module_device(self.model))
        return F.normalize(self.model.encode_text(tokens), dim=-1)

    def zero_shot(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """(B, T) probabilities of each prompt: softmax over prompts, or sigmoids for SigLIP-style models."""
        logits = self.model.logit_scale.exp() * self.encode_images(images) @ self.encode_texts(prompts).T
        if self.model.logit_bias is not None:
            return torch.sigmoid(logits + self.model.logit_bias)
        return logits.softmax(dim=-1)


def load_clip(
    source: str, *, pretrained_file: str | Path | None = None, device: str | torch.device = "cpu"
) -> ClipModel:
    """Load a frozen open_clip model.

    `source` is one of
    - an open_clip folder (open_clip_config.json with model_cfg/preprocess_cfg plus weights, the Hub
      layout), a path optionally "local-dir:"-prefixed;
    - "hf-hub:org/name[@revision]", read from the Hugging Face cache only;
    - an open_clip architecture name ("ViT-B-32") with a local checkpoint `pretrained_file`.
    Checkpoints are read with safetensors or `torch.load(weights_only=True)`.
    """
    if source.startswith(DIR_PREFIX) or Path(source).is_dir():
        _refuse_file(source, pretrained_file)
        model, tokenizer = _from_directory(Path(source.removeprefix(DIR_PREFIX)), source, device)
    elif source.startswith(HUB_PREFIX):
        _refuse_file(source, pretrained_file)
        model, tokenizer = _from_hub_cache(source.removeprefix(HUB_PREFIX), source, device)
    else:
        model, tokenizer = _from_name(source, pretrained_file, device)
    model.eval().requires_grad_(False)
    clip = ClipModel(model, tokenizer, open_clip.get_model_preprocess_cfg(model))
    return clip.eval()


def _refuse_file(source: str, pretrained_file: str | Path | None) -> None:
    if pretrained_file is not None:
        raise ValueError(
            f"pretrained_file={str(pretrained_file)!r}: only valid with an open_clip architecture name, "
            f"but source {source!r} already names its own weights"
        )


def _from_directory(folder: Path, source: str, device: str | torch.device) -> tuple[torch.nn.Module, object]:
    if not folder.is_dir():
        raise FileNotFoundError(f"CLIP source {source!r}: folder {folder} does not exist")
    OPEN_CLIP_FOLDER.check(folder, f"CLIP source {source!r}")
    if not any(p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()):
        raise MissingWeightsError(
            source,
            [str(folder / name) for name in OPEN_CLIP_WEIGHT_FILES],
            f"write open_clip_model.safetensors (the model's state dict) into {folder}",
            hint="Run it where the model was trained (for the shortcut world: rerun the rule that trains it).",
        )
    name = DIR_PREFIX + str(folder)
    fetch = download_command(source.removeprefix(HUB_PREFIX)) if source.startswith(HUB_PREFIX) else None
    with reading_weights(weight_files(folder, WEIGHT_SUFFIXES), fetch):
        model = open_clip.create_model(name, device=device, weights_only=True, require_pretrained=True)
    return model, open_clip.get_tokenizer(name)


def _from_hub_cache(hub_id: str, source: str, device: str | torch.device) -> tuple[torch.nn.Module, object]:
    snapshot = cached_snapshot(hub_id, CONFIG_FILE, OPEN_CLIP_WEIGHT_FILES)
    if snapshot is None:
        looked_in = [snapshot_path(hub_id, name) for name in (CONFIG_FILE, *OPEN_CLIP_WEIGHT_FILES)]
        raise MissingWeightsError(source, looked_in, download_command(hub_id), hint=COPY_CACHE_HINT)
    return _from_directory(snapshot, source, device)


def _from_name(name: str, pretrained_file: str | Path | None, device: str | torch.device) -> tuple[torch.nn.Module, object]:
    if name not in open_clip.list_models():
        raise ValueError(
            f"CLIP source {name!r}: not a folder, not 'hf-hub:...' and not an open_clip architecture "
            "(see open_clip.list_models())"
        )
    hub_ids = _known_hub_ids(name)
    fetch = download_command(hub_ids[0]) if hub_ids else f"pass pretrained_file=<checkpoint of {name}>"
    if pretrained_file is None:
        shown = ", ".join(hub_ids[:5]) + (", ..." if len(hub_ids) > 5 else "")
        hint = f"Hub repos with {name} weights: {shown}; load one with load_clip('hf-hub:<repo>')." if hub_ids else ""
        raise MissingWeightsError(name, ["pretrained_file (none given)"], fetch, hint=hint)
    path = Path(pretrained_file)
    if not path.is_file():
        raise MissingWeightsError(name, [str(path)], fetch, hint=COPY_CACHE_HINT)
    if not path.name.endswith(WEIGHT_SUFFIXES):
        raise ValueError(f"pretrained_file={str(path)!r}: expected one of {list(WEIGHT_SUFFIXES)}")
    with reading_weights([path], fetch if hub_ids else None):
        model = open_clip.create_model(name, pretrained=str(path), device=device, weights_only=True,
                                       require_pretrained=True)
    return model, open_clip.get_tokenizer(name)


def _known_hub_ids(name: str) -> list[str]:
    """Hub repos open_clip lists for an architecture, for error messages."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    ids = [open_clip.get_pretrained_cfg(name, tag).get("hf_hub", "").strip("/") for tag in tags]
    return [i for i in ids if i]
