"""Turn the pipeline config into loaded models and source images: the world's own, or real ones.

`models.<classifier|prior|clip>.source: world` means the shortcut world's trained model (at
`preimage.workflow.model_dir`); anything else names a real model, loaded offline from a local folder, a local
weight file or the Hugging Face cache, never downloaded. `sets.sources.kind` picks the source images: a world
split, an image folder (`root/<class>/<image>`) or a manifest. Missing keys take the defaults below, so a config
without a `models` section runs the world; unknown keys raise, naming the key.

Every function takes the whole config dict, so a notebook can load exactly what a pipeline run used. The model
libraries (diffusers, timm, open_clip, lpips) are imported inside the functions that load models, so selecting
sources for a world run (as Snakemake does when it builds the job graph) costs no more than `preimage.workflow`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from preimage.config import MODEL_KINDS, schema_defaults
from preimage.data import load_images, select_from_folder, select_from_manifest, select_from_world
from preimage.precision import resolve_dtype
from preimage.world.generator import WorldSpec

if TYPE_CHECKING:
    from preimage.models import ClipModel, Lpips
    from preimage.priors import DiffusionPrior

WORLD = "world"
HUB_PREFIX = "hf-hub:"
DIR_PREFIX = "local-dir:"
CLASS_NAME = "{class_name}"
REAL_IMAGE_SIZE = 224  # the concept step's real images from files: ImageNet models' and CLIP's input size
SET_ID_SEPARATOR = "__"  # set ids are '<image_id>__<objective>__<sampler>'

SOURCE_KINDS = ("world", "folder", "manifest")
SOURCE_REQUIRED = ("kind", "per_class", "seed")

# model_index.json `_class_name` -> the `preimage.priors` class that loads that pipeline's folder
PIPELINES = {
    "StableDiffusionPipeline": "LatentDiffusionPrior",
    "StableDiffusionXLPipeline": "SdxlDiffusionPrior",
    "DDPMPipeline": "PixelDiffusionPrior",
    "DDIMPipeline": "PixelDiffusionPrior",
}
PIXEL_PRIOR = "PixelDiffusionPrior"
PIPELINE_INDEX = "model_index.json"
PIPELINE_WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors.index.json")


# --- settings ----------------------------------------------------------------------------------------------------


def model_settings(config: dict, kind: str) -> dict[str, Any]:
    """`models.<kind>` with defaults filled in; unknown keys raise naming them."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    given = (config.get("models") or {}).get(kind) or {"source": WORLD}
    return _with_defaults(given, schema_defaults("models", kind) | {"source": None}, f"models.{kind}")


def source_settings(config: dict) -> dict[str, Any]:
    """`sets.sources` with defaults filled in (kind: world), checked for the keys its kind needs."""
    given = config["sets"]["sources"]
    missing = [key for key in SOURCE_REQUIRED if key not in given]
    if missing:
        raise ValueError(f"sets.sources: missing key(s) {missing}")
    settings = _with_defaults(given, schema_defaults("sets", "sources") | {key: None for key in SOURCE_REQUIRED},
                              "sets.sources")
    if settings["kind"] not in SOURCE_KINDS:
        raise ValueError(f"sets.sources.kind: {settings['kind']!r}; expected one of {list(SOURCE_KINDS)}")
    needed = "split" if settings["kind"] == WORLD else "path"
    if settings[needed] is None:
        raise ValueError(f"sets.sources.{needed}: required for kind {settings['kind']!r}")
    return settings


def _with_defaults(given: dict, defaults: dict, where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(defaults)}")
    return defaults | given


def world_model_dir(config: dict, kind: str) -> str:
    """Where the world's trained `kind` model lives (imported here: preimage.workflow may import this module)."""
    from preimage.workflow import model_dir

    return model_dir(config, kind)


def _load_model(config: dict, kind: str, loader: Callable[..., Any], device: str | torch.device) -> Any:
    """The world's trained `kind` model, or `models.<kind>.source` (with its pretrained_file) through `loader`."""
    settings = model_settings(config, kind)
    if settings["source"] != WORLD:
        return loader(settings["source"], pretrained_file=settings["pretrained_file"], device=device)
    if settings["pretrained_file"] is not None:
        raise ValueError(f"models.{kind}.pretrained_file: only for a named architecture, not for source 'world'")
    return loader(world_model_dir(config, kind), device=device)


def model_files(config: dict, kind: str) -> list[str]:
    """The files a real `models.<kind>` is loaded from: its folder's files (a local folder, or its snapshot in
    the Hugging Face cache) and its `pretrained_file`; none for a world model or an architecture name. A missing
    folder or file raises here, naming the key; a classifier or CLIP Hub id not in the cache gives none (loading
    it then raises, saying where it looked)."""
    settings = model_settings(config, kind)
    source = settings["source"]
    if source == WORLD:
        return []
    weight_file = settings.get("pretrained_file")
    if weight_file and not Path(weight_file).is_file():
        raise FileNotFoundError(f"models.{kind}.pretrained_file {weight_file!r}: no such file")
    folder = diffusers_folder(source) if kind == "prior" else _weights_folder(source, kind)
    files = [weight_file] if weight_file else []
    if folder is not None:
        files += sorted(str(path) for path in folder.rglob("*") if path.is_file())
    return files


def _weights_folder(source: str, kind: str) -> Path | None:
    """The folder a classifier or CLIP source names (a local path, or a cached Hub snapshot); None for an
    architecture name, or a Hub id not in the cache (loading it then says where it looked)."""
    from preimage.models.hub import cached_file

    path = Path(source.removeprefix(DIR_PREFIX)).expanduser()
    if path.is_dir():
        return path
    if source.startswith(DIR_PREFIX) or source.startswith((".", "/", "~")) or "\\" in source:
        raise FileNotFoundError(f"models.{kind}.source {source!r}: no such folder")
    if not source.startswith(HUB_PREFIX):
        return None  # a timm or open_clip architecture name
    found = cached_file(source.removeprefix(HUB_PREFIX), "config.json" if kind == "classifier" else "open_clip_config.json")
    return None if found is None else found.parent


# --- models ------------------------------------------------------------------------------------------------------


def resolve_classifier(config: dict, device: str | torch.device) -> torch.nn.Module:
    """The explained classifier: the world's trained one, or a timm folder / "hf-hub:id" / timm name (+ file)."""
    from preimage.models import load_classifier

    return _load_model(config, "classifier", load_classifier, device)


def resolve_clip(config: dict, device: str | torch.device) -> ClipModel:
    """The CLIP model for concepts: the world's trained one, or an open_clip folder / "hf-hub:id" / arch (+ file)."""
    from preimage.models import load_clip

    return _load_model(config, "clip", load_clip, device)


def resolve_perceptual(config: dict, device: str | torch.device) -> Lpips:
    """LPIPS as `perceptual` configures it."""
    from preimage.models import load_lpips

    return load_lpips(**config["perceptual"], device=device)


def resolve_prior(config: dict, device: str | torch.device, class_name: str | None = None) -> DiffusionPrior:
    """The diffusion prior, with `{class_name}` in its prompts filled by `class_name` (see `class_text`).

    `source: world` is the world's pixel prior. Otherwise `source` is a diffusers pipeline folder or a Hub id
    ("org/name[@revision]", optionally "hf-hub:"-prefixed) read from the Hugging Face cache; the folder's
    model_index.json `_class_name` picks the prior (PIPELINES); a folder without one but with unet/ and
    scheduler/ (the world's training layout) is a pixel prior.
    """
    from preimage import priors

    settings = model_settings(config, "prior")
    dtype = resolve_dtype("models.prior.dtype", settings["dtype"], device)
    if settings["source"] == WORLD:
        folder, prior_class = Path(world_model_dir(config, "prior")), PIXEL_PRIOR
    else:
        folder = diffusers_folder(settings["source"])
        prior_class = pipeline_prior_class(folder)
    if prior_class == PIXEL_PRIOR:
        _check_unconditional(settings)
        return priors.PixelDiffusionPrior.from_pretrained(folder, settings["timestep_spacing"], dtype).to(device)
    prior = getattr(priors, prior_class).from_pretrained(
        folder,
        prompt=fill_prompt(settings["prompt"], class_name),
        negative_prompt=fill_prompt(settings["negative_prompt"], class_name),
        cfg_scale=settings["cfg_scale"],
        timestep_spacing=settings["timestep_spacing"],
        torch_dtype=dtype,
    )
    return prior.to(device)


def _check_unconditional(settings: dict) -> None:
    """A pixel prior has no prompt: refuse settings that would silently do nothing."""
    defaults = schema_defaults("models", "prior")
    unused = {key: settings[key] for key in ("prompt", "negative_prompt", "cfg_scale") if settings[key] != defaults[key]}
    if unused:
        raise ValueError(
            f"models.prior: {unused} do not apply to an unconditional pixel prior (source {settings['source']!r}); "
            f"leave them at {({key: defaults[key] for key in unused})}"
        )


def fill_prompt(template: str, class_name: str | None) -> str:
    """The prompt with `{class_name}` replaced (plain replacement: other braces stay as written)."""
    if CLASS_NAME not in template:
        return template
    if class_name is None:
        raise ValueError(
            f"models.prior prompt {template!r} names {CLASS_NAME}; pass the source's class, "
            "resolve_prior(config, device, class_name=class_text(classifier, row.class_name))"
        )
    return template.replace(CLASS_NAME, class_name)


def class_text(classifier: torch.nn.Module, class_name: str) -> str:
    """How a prompt names a class: the first lemma of the classifier's description of it ("tench" for
    ImageNet's "n01440764"), else the class name itself (the world's "square")."""
    names = getattr(classifier, "label_names", None)
    descriptions = getattr(classifier, "label_descriptions", None)
    if names and descriptions and class_name in names:
        return descriptions[names.index(class_name)].split(",")[0].strip()
    return class_name


def diffusers_folder(source: str) -> Path:
    """A diffusers pipeline folder: `source` as a local path, else as a Hub id in the Hugging Face cache."""
    from preimage.models import MissingWeightsError
    from preimage.models.hub import COPY_CACHE_HINT, cached_snapshot, download_command, snapshot_path, split_revision

    path = Path(source.removeprefix(DIR_PREFIX)).expanduser()
    if path.is_dir():
        return path
    hub_id = source.removeprefix(HUB_PREFIX)
    try:
        split_revision(hub_id)
    except ValueError:
        raise FileNotFoundError(
            f"models.prior.source {source!r}: no such folder, and not a Hub id 'org/name[@revision]'"
        ) from None
    snapshot = cached_snapshot(hub_id, PIPELINE_INDEX, PIPELINE_WEIGHTS)
    if snapshot is None:
        looked_in = [f"{path.resolve()} (as a local folder)"]
        looked_in += [snapshot_path(hub_id, name) for name in (PIPELINE_INDEX, *PIPELINE_WEIGHTS)]
        raise MissingWeightsError(source, looked_in, download_command(hub_id), hint=COPY_CACHE_HINT)
    return snapshot


def pipeline_prior_class(folder: Path) -> str:
    """The name of the `preimage.priors` class that loads a diffusers folder, from model_index.json `_class_name`."""
    index = folder / PIPELINE_INDEX
    if not index.is_file():
        if (folder / "unet").is_dir() and (folder / "scheduler").is_dir():
            return PIXEL_PRIOR
        raise ValueError(f"prior folder {str(folder)!r}: no {PIPELINE_INDEX} and no unet/ + scheduler/ folders")
    pipeline = json.loads(index.read_text()).get("_class_name")
    if pipeline not in PIPELINES:
        raise ValueError(
            f"prior folder {str(folder)!r}: pipeline {pipeline!r} is not supported; expected one of {list(PIPELINES)}"
        )
    return PIPELINES[pipeline]


# --- source images -----------------------------------------------------------------------------------------------


def select_sources_from_config(config: dict) -> pd.DataFrame:
    """The source images (`preimage.data` selection table), labelled in the classifier's vocabulary.

    Image ids name result folders ('<image_id>__<objective>__<sampler>'), so the '/' of folder and manifest
    paths becomes '.', and an id containing '__' is refused.
    """
    settings = source_settings(config)
    picks = {"per_class": settings["per_class"], "seed": settings["seed"], "classes": settings["classes"]}
    if settings["kind"] == WORLD:
        return select_from_world(WorldSpec.from_config(config["world"]), settings["split"], **picks)
    select = select_from_folder if settings["kind"] == "folder" else select_from_manifest
    return path_safe_ids(select(settings["path"], label_names=classifier_label_names(config), **picks))


def path_safe_ids(selection: pd.DataFrame) -> pd.DataFrame:
    """The selection with ids usable as one folder name: '/' and '\\' become '.'."""
    ids = selection["image_id"].str.replace("/", ".", regex=False).str.replace("\\", ".", regex=False)
    clashing = [image_id for image_id in ids if SET_ID_SEPARATOR in image_id or image_id.startswith(".")]
    if clashing:
        raise ValueError(f"source image ids {clashing[:3]}: ids may not contain {SET_ID_SEPARATOR!r} or start with '.'")
    if ids.duplicated().any():
        raise ValueError(f"source image ids {sorted(ids[ids.duplicated()])[:3]} clash once '/' becomes '.'")
    return selection.assign(image_id=ids)


def select_real_images(config: dict) -> pd.DataFrame:
    """The run's own labelled real images for the concept step (`concepts.baseline_split` or `real_split`
    `sources`): every image of `sets.sources`' folder or manifest of its classes, at most `concepts.real_images`
    drawn evenly over the classes with `sets.sources.seed`."""
    settings = source_settings(config)
    if settings["kind"] == WORLD:
        raise ValueError("concepts.baseline_split / real_split 'sources': sets.sources.kind must be 'folder' or "
                         "'manifest' (for the world, name a world split)")
    select = select_from_folder if settings["kind"] == "folder" else select_from_manifest
    every = select(settings["path"], label_names=classifier_label_names(config), per_class=None,
                   seed=settings["seed"], classes=settings["classes"])
    per_class = -(-config["concepts"]["real_images"] // every["class_name"].nunique())
    return path_safe_ids(every.groupby("class_name", sort=False).head(per_class).reset_index(drop=True))


def real_image_table(table: pd.DataFrame) -> pd.DataFrame:
    """image_id and class_name of a real-image table: a world split's (class = its `shape`) or a selection's."""
    names = table["shape"] if "shape" in table else table["class_name"]
    return pd.DataFrame({"image_id": table["image_id"].to_numpy(), "class_name": names.astype(str).to_numpy()})


def load_source_images(config: dict, selection: pd.DataFrame, image_size: int) -> torch.Tensor:
    """(N, 3, image_size, image_size) images in [0, 1] for selected rows; pass the prior's `image_size`."""
    world = WorldSpec.from_config(config["world"]) if "world" in config else None
    return load_images(selection, image_size, world=world)


def classifier_label_names(config: dict) -> list[str] | None:
    """The classifier's class names from its metadata alone (no weights loaded), or None when it has none.

    The same names `load_classifier` attaches as `label_names`: the config's, else ImageNet synsets when the
    class count matches an ImageNet subset.
    """
    from timm.data import ImageNetInfo, infer_imagenet_subset

    settings = model_settings(config, "classifier")
    if settings["source"] == WORLD:
        return list(WorldSpec.from_config(config["world"]).shapes)
    metadata = _timm_metadata(settings["source"])
    inner = metadata.get("pretrained_cfg") or {}
    names = metadata.get("label_names") or inner.get("label_names")
    if isinstance(names, dict):
        names = [names.get(str(i), names.get(i)) for i in range(len(names))]
    if names:
        return [str(name) for name in names]
    subset = infer_imagenet_subset({"num_classes": metadata.get("num_classes") or inner.get("num_classes")})
    return list(ImageNetInfo(subset).label_names()) if subset else None


def _timm_metadata(source: str) -> dict[str, Any]:
    """A timm classifier's config.json (folder or Hub cache), or its pretrained config for a timm name."""
    from timm.models import get_pretrained_cfg

    from preimage.models import MissingWeightsError
    from preimage.models.hub import COPY_CACHE_HINT, cached_file, download_command, snapshot_path

    folder = Path(source.removeprefix(DIR_PREFIX))
    if source.startswith(DIR_PREFIX) or folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"models.classifier.source {source!r}: {config_file} does not exist")
        return json.loads(config_file.read_text())
    if source.startswith(HUB_PREFIX):
        hub_id = source.removeprefix(HUB_PREFIX)
        config_file = cached_file(hub_id, "config.json")
        if config_file is None:
            raise MissingWeightsError(source, [snapshot_path(hub_id, "config.json")], download_command(hub_id),
                                      hint=COPY_CACHE_HINT)
        return json.loads(config_file.read_text())
    try:
        pretrained = get_pretrained_cfg(source)
    except RuntimeError as error:  # a known architecture with an unknown tag
        raise ValueError(f"models.classifier.source {source!r}: {error}") from None
    if pretrained is None:
        raise ValueError(f"models.classifier.source {source!r}: not a folder, not 'hf-hub:...' and not a timm model")
    return {"num_classes": pretrained.num_classes, "label_names": pretrained.label_names}
