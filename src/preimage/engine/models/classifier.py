"""Load timm classifiers from local folders, local weight files or the Hugging Face cache, never the network,
or wrap any classifier module (a torchvision model, your own) the same way.

The returned module is the timm model (or your module) itself, so `named_modules()` keeps its own names
("layer3.0.conv1") that objectives use to address layers. Preprocessing is attached as a forward pre-hook
rather than a wrapper module: a wrapper would rename every layer ("model.layer3.0.conv1") and hide timm's
methods, while a hook only changes what `model(images)` receives. Calling `model.forward_features` or other
methods directly bypasses the hook and expects normalised input, as in timm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_model_data_config
from timm.models import (
    get_pretrained_cfg,
    is_model,
    load_state_dict,
    split_model_name_tag,
)

from preimage.engine.models.errors import (
    TIMM_FOLDER,
    MissingWeightsError,
    reading_weights,
    weight_files,
)
from preimage.engine.models.hub import (
    COPY_CACHE_HINT,
    cached_file,
    cached_snapshot,
    download_command,
    snapshot_path,
)
from preimage.engine.models.preprocess import (
    INTERPOLATIONS,
    RESIZE_MODES,
    check_images,
    fit_to_size,
    normalise,
)

# Weight files timm's local-dir loader accepts, in its order of preference.
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt", ".ckpt")
HUB_PREFIX = "hf-hub:"
DIR_PREFIX = "local-dir:"
# preimage's resize mode -> timm's name for it in data_config["crop_mode"]
CROP_MODES = {"shortest": "center", "longest": "border", "squash": "squash"}


class ImageInput:
    """Forward pre-hook turning [0, 1] images into what the model was trained on.

    Resizes (by default the short side to the model's input size, then a centre crop; see `fit_to_size`
    for the other `resize` modes) only when the spatial size differs, then normalises with the model's
    mean/std. timm's `crop_pct` is not applied: the model sees the whole image. Interpolations a tensor
    resize lacks (e.g. "lanczos") fall back to bicubic. A plain class rather than a closure, so the model
    stays picklable and deep-copyable.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        size: Sequence[int],
        interpolation: str,
        resize: str = "shortest",
    ) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation if interpolation in INTERPOLATIONS else "bicubic"
        self.resize = resize

    def __call__(self, module: torch.nn.Module, args: tuple) -> tuple:
        images, *rest = args
        check_images(images)
        images = fit_to_size(images, self.size, self.interpolation, mode=self.resize)
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


def wrap_classifier(
    module: torch.nn.Module,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int | Sequence[int],
    class_names: Sequence[str] | None = None,
    class_descriptions: Sequence[str] | None = None,
    interpolation: str = "bilinear",
    resize: str = "shortest",
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Make any classifier module (a torchvision model, your own) explainable like one `load_classifier` loads.

    Load its weights first (`module.load_state_dict(...)`). The module itself is returned, changed in place:
    in eval mode, frozen, on `device`, taking (B, 3, H, W) images in [0, 1]. Its preprocessing, what it was
    trained on, runs as a forward pre-hook: resize to `input_size` ((H, W) or one side; `resize` "shortest"
    centre-crops, "longest" pads, "squash" stretches), then (x - mean) / std with per-channel statistics of
    [0, 1] images. A hook rather than a wrapper keeps the module's own layer names ("layer4.0.conv1") for
    `neuron`, `channel` and `features`. `class_names`, in output order, become `label_names` (so
    `label(model, target="tench")` works, and the concept step names classes) and `class_descriptions`
    `label_descriptions` (prompts name a class by its description's text before the first comma). One
    forward pass on a grey image checks that the module returns one logit per class name.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    if any(isinstance(hook, ImageInput) for hook in module._forward_pre_hooks.values()):
        raise ValueError("module: already has preimage's preprocessing hook (from wrap_classifier or "
                         "load_classifier); wrapping it again would normalise its input twice")
    data_config = {
        "input_size": (3, *_check_input_size(input_size)),
        "interpolation": _check_choice("interpolation", interpolation, INTERPOLATIONS),
        "mean": _check_statistics("mean", mean, positive=False),
        "std": _check_statistics("std", std, positive=True),
        "crop_pct": 1.0,
        "crop_mode": CROP_MODES[_check_choice("resize", resize, RESIZE_MODES)],
    }
    names = _check_class_names(class_names)
    descriptions = _check_descriptions(class_descriptions, names)
    _freeze(module, device)
    _check_outputs(module, data_config, names, device)
    return _attach(module, data_config, resize, names, descriptions)


def _check_input_size(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        size = (input_size, input_size)
    else:
        size = tuple(input_size) if isinstance(input_size, Sequence) else ()
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"input_size={input_size!r}: expected the side (224) or (height, width) in pixels the "
                         "module was trained on, positive integers")
    return size


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {list(allowed)}")
    return value


def _check_statistics(name: str, values: Sequence[float], positive: bool) -> tuple[float, float, float]:
    """Three per-channel statistics of [0, 1] images: means in [0, 1], or (`positive`) finite stds > 0."""
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        numbers = ()
    valid = (lambda v: 0.0 < v < math.inf) if positive else (lambda v: 0.0 <= v <= 1.0)
    if len(numbers) != 3 or not all(valid(v) for v in numbers):
        expected = "> 0" if positive else "in [0, 1]"
        raise ValueError(f"{name}={values!r}: expected 3 numbers {expected}, one per RGB channel, for images "
                         "in [0, 1] (ImageNet: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); "
                         "statistics of 0-255 images must be divided by 255)")
    return numbers


def _check_class_names(class_names: Sequence[str] | None) -> list[str] | None:
    if class_names is None:
        return None
    names = [] if isinstance(class_names, str) else list(class_names)
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"class_names={class_names!r}: expected a list of distinct non-empty strings, one per "
                         "output of the module, in output order")
    return names


def _check_descriptions(class_descriptions: Sequence[str] | None, names: list[str] | None) -> list[str] | None:
    if class_descriptions is None:
        return None
    descriptions = list(class_descriptions)
    if names is None or len(descriptions) != len(names) or not all(isinstance(d, str) for d in descriptions):
        raise ValueError(f"class_descriptions: expected one string per class name "
                         f"({0 if names is None else len(names)} class_names given), got {class_descriptions!r}")
    return descriptions


@torch.no_grad()
def _check_outputs(
    module: torch.nn.Module, data_config: dict, names: list[str] | None, device: str | torch.device
) -> None:
    """One grey image of the input size, normalised as the hook will: the module must return (1, K) logits."""
    grey = torch.full((1, *data_config["input_size"]), 0.5, device=device)
    try:
        out = module(normalise(grey, data_config["mean"], data_config["std"]))
    except RuntimeError as error:
        raise ValueError(f"input_size={data_config['input_size'][1:]}: the module fails on an image of that "
                         f"size: {error}") from error
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"module: expected a classifier returning (B, K) logits, got {shape} for one image")
    if names is not None and len(names) != out.shape[1]:
        raise ValueError(f"class_names: {len(names)} names, but the module outputs {out.shape[1]} logits; "
                         "give one name per output, in output order")


def _refuse_file(source: str, pretrained_file: str | Path | None) -> None:
    if pretrained_file is not None:
        raise ValueError(
            f"pretrained_file={str(pretrained_file)!r}: only valid with a timm model name, "
            f"but source {source!r} already names its own weights"
        )


def _from_directory(folder: Path, source: str, num_classes: int | None) -> torch.nn.Module:
    if not folder.is_dir():
        raise FileNotFoundError(f"classifier source {source!r}: folder {folder} does not exist")
    TIMM_FOLDER.check(folder, f"classifier source {source!r}")
    if not any(p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) for p in folder.iterdir()):
        raise MissingWeightsError(
            source,
            [str(folder / name) for name in TIMM_WEIGHT_FILES],
            f"timm.models.save_for_hf(model, '{folder}', safe_serialization=True)",
            hint="Run it where the model was trained (for the shortcut world: rerun the rule that trains it).",
        )
    fetch = download_command(source.removeprefix(HUB_PREFIX)) if source.startswith(HUB_PREFIX) else None
    with reading_weights(weight_files(folder, WEIGHT_SUFFIXES), fetch):
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
    with reading_weights([path]):
        in_file = _head_size(name, path)
    if in_file is None and num_classes is None:
        raise ValueError(f"pretrained_file={str(path)!r}: no classifier head found for {name!r}; pass num_classes")
    _check_num_classes(str(path), in_file, num_classes)
    num_classes = in_file if in_file is not None else num_classes
    with reading_weights([path]):
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
    """Freeze a timm model and attach its preprocessing and the metadata objectives and reports need."""
    _freeze(model, device)
    names = _label_names(model)
    return _attach(model, resolve_model_data_config(model), "shortest", names, _label_descriptions(model, names))


def _freeze(model: torch.nn.Module, device: str | torch.device) -> None:
    """Eval mode, no gradients to the weights, on `device`.

    Weights go channels-last: oneDNN and cuDNN convolutions run faster in that layout, and the classifier's
    gradient is paid at every guided step (docs/benchmarks.md).
    """
    model.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)


def _attach(
    model: torch.nn.Module,
    data_config: dict,
    resize: str,
    names: list[str] | None,
    descriptions: list[str] | None,
) -> torch.nn.Module:
    """Register the `ImageInput` pre-hook and set `data_config`, `label_names`, `label_descriptions`."""
    size = data_config["input_size"][1:]
    model.register_forward_pre_hook(
        ImageInput(data_config["mean"], data_config["std"], size, data_config["interpolation"], resize)
    )
    model.data_config = data_config
    model.label_names = names
    model.label_descriptions = descriptions
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
