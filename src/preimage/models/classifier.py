"""Load timm classifiers from local folders, local weight files or the Hugging Face cache, never the network.

The returned module is the timm model itself, so `named_modules()` keeps timm's names ("layer3.0.conv1")
that objectives use to address layers. Preprocessing is attached as a forward pre-hook rather than a
wrapper module: a wrapper would rename every layer ("model.layer3.0.conv1") and hide timm's methods,
while a hook only changes what `model(images)` receives. Calling `model.forward_features` or other
methods directly bypasses the hook and expects normalised input, as in timm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_model_data_config
from timm.models import get_pretrained_cfg, is_model, load_state_dict, split_model_name_tag

from preimage.models.errors import MissingWeightsError
from preimage.models.hub import COPY_CACHE_HINT, cached_file, cached_snapshot, download_command, snapshot_path
from preimage.models.preprocess import INTERPOLATIONS, check_images, fit_to_size, normalise

# Weight files timm's local-dir loader accepts, in its order of preference.
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt", ".ckpt")
HUB_PREFIX = "hf-hub:"
DIR_PREFIX = "local-dir:"


class ImageInput:
    """Forward pre-hook turning [0, 1] images into what the timm model was trained on.

    Resizes (short side to the model's input size, centre crop) only when the spatial size differs,
    then normalises with the model's mean/std. timm's `crop_pct` is not applied: the model sees the
    whole image. Interpolations a tensor resize lacks (e.g. "lanczos") fall back to bicubic. A plain
    class rather than a closure, so the model stays picklable and deep-copyable.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: Sequence[int], interpolation: str) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation if interpolation in INTERPOLATIONS else "bicubic"

    def __call__(self, module: torch.nn.Module, args: tuple) -> tuple:
        images, *rest = args
        check_images(images)
        images = fit_to_size(images, self.size, self.interpolation, mode="shortest")
        return (normalise(images, self.mean, self.std), *rest)


def load_classifier(
    source: str,
    *,
    pretrained_file: str | Path | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Load a frozen timm classifier that takes (B, 3, H, W) images in [0, 1].

    `source` is one of
    - a timm folder as written by `timm.models.save_for_hf` (a path, optionally "local-dir:"-prefixed);
    - "hf-hub:org/name[@revision]", read from the Hugging Face cache only;
    - a timm model name ("resnet50" or "resnet50.a1_in1k"), with weights from `pretrained_file`
      (.safetensors, or .pth/.bin/.pt/.ckpt read with `torch.load(weights_only=True)`) or else from
      the cached Hub repo named by timm's pretrained config.
    `num_classes` is only needed for a weight file whose classifier head timm cannot find; it must
    match the weights (a replaced, randomly initialised head would make explanations meaningless).

    The module is in eval mode with frozen parameters and carries `data_config` (timm's resolved
    input size, interpolation, mean, std), `label_names` (config's names, else ImageNet synsets when
    the class count matches an ImageNet subset, else None) and `label_descriptions` (likewise).
    """
    if source.startswith(DIR_PREFIX) or Path(source).is_dir():
        _refuse_file(source, pretrained_file)
        model = _from_directory(Path(source.removeprefix(DIR_PREFIX)), source, num_classes)
    elif source.startswith(HUB_PREFIX):
        _refuse_file(source, pretrained_file)
        model = _from_hub_cache(source.removeprefix(HUB_PREFIX), source, num_classes)
    elif pretrained_file is not None:
        model = _from_file(source, Path(pretrained_file), num_classes)
    else:
        model = _from_name_cache(source, num_classes)
    return _prepare(model, device)


def _refuse_file(source: str, pretrained_file: str | Path | None) -> None:
    if pretrained_file is not None:
        raise ValueError(
            f"pretrained_file={str(pretrained_file)!r}: only valid with a timm model name, "
            f"but source {source!r} already names its own weights"
        )


def _from_directory(folder: Path, source: str, num_classes: int | None) -> torch.nn.Module:
    if not folder.is_dir():
        raise FileNotFoundError(f"classifier source {source!r}: folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"classifier source {source!r}: {folder} has no config.json; expected a folder written by "
            "timm.models.save_for_hf(model, folder, safe_serialization=True)"
        )
    if not any(p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()):
        raise MissingWeightsError(
            source,
            [str(folder / name) for name in TIMM_WEIGHT_FILES],
            f"timm.models.save_for_hf(model, '{folder}', safe_serialization=True)",
            hint="Run it where the model was trained (for the shortcut world: rerun the rule that trains it).",
        )
    model = timm.create_model(DIR_PREFIX + str(folder), pretrained=True)
    _check_num_classes(source, model.num_classes, num_classes)
    return model


def _from_hub_cache(hub_id: str, source: str, num_classes: int | None) -> torch.nn.Module:
    snapshot = cached_snapshot(hub_id, "config.json", TIMM_WEIGHT_FILES)
    if snapshot is None:
        looked_in = [snapshot_path(hub_id, name) for name in ("config.json", *TIMM_WEIGHT_FILES)]
        raise MissingWeightsError(source, looked_in, download_command(hub_id), hint=COPY_CACHE_HINT)
    return _from_directory(snapshot, source, num_classes)


def _check_architecture(name: str) -> None:
    architecture, _ = split_model_name_tag(name)
    if not is_model(architecture):
        raise ValueError(
            f"classifier source {name!r}: not a folder, not 'hf-hub:...' and not a timm architecture "
            "(see timm.list_models())"
        )


def _from_file(name: str, path: Path, num_classes: int | None) -> torch.nn.Module:
    _check_architecture(name)
    if not path.is_file():
        raise MissingWeightsError(name, [str(path)], _name_fetch_command(name), hint=COPY_CACHE_HINT)
    if not path.name.endswith(WEIGHT_SUFFIXES):
        raise ValueError(f"pretrained_file={str(path)!r}: expected one of {list(WEIGHT_SUFFIXES)}")
    in_file = _head_size(name, path)
    if in_file is None and num_classes is None:
        raise ValueError(f"pretrained_file={str(path)!r}: no classifier head found for {name!r}; pass num_classes")
    _check_num_classes(str(path), in_file, num_classes)
    num_classes = in_file if in_file is not None else num_classes
    return timm.create_model(
        name,
        pretrained=True,
        num_classes=num_classes,
        pretrained_cfg_overlay={"file": str(path), "num_classes": num_classes},
    )


def _head_size(name: str, path: Path) -> int | None:
    """Number of classes in a weight file, read from the head timm's config names (e.g. "fc")."""
    cfg = get_pretrained_cfg(name)
    heads = cfg.classifier if cfg is not None else None
    heads = (heads,) if isinstance(heads, str) else tuple(heads or ())
    state = load_state_dict(str(path), weights_only=True)
    return next((int(state[f"{h}.weight"].shape[0]) for h in heads if f"{h}.weight" in state), None)


def _from_name_cache(name: str, num_classes: int | None) -> torch.nn.Module:
    _check_architecture(name)
    cfg = get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise MissingWeightsError(
            name, [], _name_fetch_command(name), hint="timm knows no Hub weights for it; pass pretrained_file."
        )
    candidates = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
    found = next((f for f in (cached_file(cfg.hf_hub_id, c) for c in candidates) if f is not None), None)
    if found is None:
        looked_in = [snapshot_path(cfg.hf_hub_id, c) for c in candidates]
        raise MissingWeightsError(name, looked_in, download_command(cfg.hf_hub_id), hint=COPY_CACHE_HINT)
    _check_num_classes(name, cfg.num_classes, num_classes)
    return _from_file(name, found, cfg.num_classes)


def _name_fetch_command(name: str) -> str:
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.hf_hub_id:
        return download_command(cfg.hf_hub_id)
    return f"python -c \"import timm, safetensors.torch; safetensors.torch.save_file(timm.create_model('{name}', pretrained=True).state_dict(), '{name}.safetensors')\""


def _check_num_classes(source: str, found: int | None, wanted: int | None) -> None:
    if wanted is not None and found is not None and wanted != found:
        raise ValueError(f"num_classes={wanted}: the weights of {source!r} have {found} classes")


def _prepare(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """Freeze, attach preprocessing and the metadata objectives and reports need.

    Weights go channels-last: oneDNN and cuDNN convolutions run faster in that layout (the world
    classifier's gradient, paid at every guided step, took 27 % less time on the 2-core CPU).
    """
    model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)
    data_config = resolve_model_data_config(model)
    model.register_forward_pre_hook(
        ImageInput(data_config["mean"], data_config["std"], data_config["input_size"][1:], data_config["interpolation"])
    )
    model.data_config = data_config
    model.label_names = _label_names(model)
    model.label_descriptions = _label_descriptions(model, model.label_names)
    return model


def _label_names(model: torch.nn.Module) -> list[str] | None:
    names = model.pretrained_cfg.get("label_names")
    if names:
        if isinstance(names, dict):
            names = [names.get(str(i), names.get(i)) for i in range(model.num_classes)]
        names = [str(n) for n in names]
        if len(names) != model.num_classes or None in names:
            raise ValueError(f"label_names in the model config: {len(names)} names for {model.num_classes} classes")
        return names
    subset = infer_imagenet_subset(model)
    return list(ImageNetInfo(subset).label_names()) if subset else None


def _label_descriptions(model: torch.nn.Module, names: list[str] | None) -> list[str] | None:
    if names is None:
        return None
    described = model.pretrained_cfg.get("label_descriptions")
    if described:
        return [str(described.get(n, n)) for n in names]
    subset = infer_imagenet_subset(model)
    if subset and not model.pretrained_cfg.get("label_names"):
        return list(ImageNetInfo(subset).label_descriptions())
    return None
