"""Turn the pipeline config into loaded models: the world's own, or real ones, and the prompts of a prior.

`models.<classifier|prior|clip|robust>.source: world` means the shortcut world's trained model (at `model_dir`);
anything else names a real model, loaded offline from a local folder, a local weight file or the Hugging Face
cache, never downloaded. Missing keys take the schema's defaults, so a config without a `models` section runs
the world; unknown keys raise, naming the key.

Every function takes the whole config dict, so a notebook can load exactly what a pipeline run used. The model
libraries (diffusers, timm, open_clip, lpips) are imported inside the functions that load models, so planning
the workflow (as Snakemake does when it builds the job graph) imports none of them, nor torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preimage.engine.models.errors import OPEN_CLIP_FOLDER, TIMM_FOLDER, FolderLayout
from preimage.engine.objectives.spec import label_target
from preimage.pipeline.config import MODEL_KINDS, schema_defaults
from preimage.utils.hashing import stable_hash
from preimage.world.generator import WorldSpec
from preimage.world.training import first_stage

if TYPE_CHECKING:
    import torch

    from preimage.engine.models import ClipModel, Lpips
    from preimage.engine.priors import DiffusionPrior

WORLD = "world"
HUB_PREFIX = "hf-hub:"
DIR_PREFIX = "local-dir:"
CLASS_NAME = "{class_name}"


# model_index.json `_class_name` -> the `preimage.engine.priors` class that loads that pipeline's folder
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
    return settings_with_defaults(given, schema_defaults("models", kind) | {"source": None}, f"models.{kind}")


def settings_with_defaults(given: dict, defaults: dict, where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(defaults)}")
    return defaults | given


WORLD_MODELS = ("classifier", "prior", "clip", "oracle", "robust", "regressor", "latent")
BIASED_DATA_MODELS = ("classifier", "robust")  # trained on the biased classifier_train split


def model_dir(config: dict, model: str) -> str:
    """Where a world model trained with this config lives: models/<world>/<model>-<fingerprint>.

    The fingerprint covers the data the model sees and its training settings, so a changed world or
    training config points to a new directory, and Snakemake retrains exactly the models affected.
    """
    if model not in WORLD_MODELS:
        raise ValueError(f"unknown world model {model!r}; expected one of {list(WORLD_MODELS)}")
    spec = WorldSpec.from_config(config["world"])
    data = (spec.regression_fingerprint() if model == "regressor"
            else spec.data_fingerprint(biased=model in BIASED_DATA_MODELS))
    return f"models/{spec.name}/{model}-{stable_hash([data, config['training'][model]])}"


def base_model_dir(config: dict, model: str) -> str:
    """Where the first stage of a model with a `refine` stage (the pixel prior, the latent model) lives: the
    directory the same settings without `refine` train into, so adding a refine stage reuses a trained model."""
    stage_one = first_stage(config["training"][model])
    return model_dir({**config, "training": {**config["training"], model: stage_one}}, model)


def _load_model(config: dict, kind: str, loader: Callable[..., Any], device: str | torch.device) -> Any:
    """The world's trained `kind` model, or `models.<kind>.source` (with its pretrained_file) through `loader`."""
    settings = model_settings(config, kind)
    if settings["source"] != WORLD:
        return loader(settings["source"], pretrained_file=settings["pretrained_file"], device=device)
    if settings["pretrained_file"] is not None:
        raise ValueError(f"models.{kind}.pretrained_file: only for a named architecture, not for source 'world'")
    return loader(model_dir(config, kind), device=device)


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
    files = [weight_file] if weight_file else []
    if kind == "prior":
        folder = diffusers_folder(source)
        pipeline_prior_class(folder)  # a folder no prior loads is refused here, while the run is planned
        return files + [str(path) for path in pipeline_files(folder)]
    folder = _weights_folder(source, kind)
    if folder is not None:
        _folder_layout(kind).check(folder, f"models.{kind}.source {source!r}")
        files += sorted(str(path) for path in folder.rglob("*") if path.is_file())
    return files


def pipeline_files(folder: Path) -> list[Path]:
    """The files a diffusers pipeline folder is loaded from: `model_index.json` and its components' subfolders. Files
    beside them (a model card, the world model's evaluation and sample grid, which a rule of their own writes after
    training) are not read, so they neither rerun the jobs that sample the prior nor make them wait."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and (path.parent != folder or path.name == "model_index.json"))


def _weights_folder(source: str, kind: str) -> Path | None:
    """The folder a classifier or CLIP source names (a local path, or a cached Hub snapshot); None for an
    architecture name, or a Hub id not in the cache (loading it then says where it looked)."""
    from preimage.engine.models.hub import cached_file

    path = Path(source.removeprefix(DIR_PREFIX)).expanduser()
    if path.is_dir():
        return path
    if source.startswith(DIR_PREFIX) or source.startswith((".", "/", "~")) or "\\" in source:
        raise FileNotFoundError(f"models.{kind}.source {source!r}: no such folder")
    if not source.startswith(HUB_PREFIX):
        return None  # a timm or open_clip architecture name
    found = cached_file(source.removeprefix(HUB_PREFIX), _folder_layout(kind).config_file)
    return None if found is None else found.parent


def _folder_layout(kind: str) -> FolderLayout:
    """What a folder of a `models.<kind>` must hold: an open_clip folder for CLIP, a timm folder for the others."""
    return OPEN_CLIP_FOLDER if kind == "clip" else TIMM_FOLDER


# --- models ------------------------------------------------------------------------------------------------------


def resolve_classifier(config: dict, device: str | torch.device) -> torch.nn.Module:
    """The explained classifier: the world's trained one, or a timm folder / "hf-hub:id" / timm name (+ file)."""
    from preimage.engine.models import load_classifier

    return _load_model(config, "classifier", load_classifier, device)


def resolve_robust(config: dict, device: str | torch.device) -> torch.nn.Module:
    """The adversarially robust classifier of `models.robust`, whose gradient spans a guided sampler's cone: the
    world's (trained by `training.robust`), or a timm folder / "hf-hub:id" / timm name (+ file) as for the
    classifier. Without `models.robust` there is none, and asking for it raises naming the key."""
    from preimage.engine.models import load_classifier

    if not (config.get("models") or {}).get("robust"):
        raise ValueError("models.robust: not given; a guided sampler with cone_angle needs the robust classifier "
                         "(`{source: world}` on the shortcut world, else a timm folder)")
    return _load_model(config, "robust", load_classifier, device)


def resolve_regressor(config: dict, device: str | torch.device) -> torch.nn.Module:
    """The regressor of `models.regressor` that objectives name with `model: regressor`: the world's (trained on
    `world.regression`), or a timm folder / "hf-hub:id" / timm name (+ file) with one output. Without
    `models.regressor` there is none, and asking for it raises naming the key."""
    from preimage.engine.models import load_classifier

    if "regressor" not in (config.get("models") or {}):
        raise ValueError("models.regressor: not given; an objective with `model: regressor` needs it "
                         "(`{source: world}` on the shortcut world, else a timm folder)")
    model = _load_model(config, "regressor", load_classifier, device)
    if model.num_classes != 1:
        raise ValueError(f"models.regressor: the model has {model.num_classes} outputs; a regressor has one")
    return model


def resolve_named_models(config: dict, device: str | torch.device, names: Collection[str]) -> dict[str, Any]:
    """The models objectives name in their `model` field (`names`, e.g. {"regressor"}), loaded by name."""
    loaders = {"regressor": resolve_regressor}
    unknown = sorted(set(names) - set(loaders))
    if unknown:
        raise ValueError(f"objective field 'model': unknown model(s) {unknown}; named models: {sorted(loaders)}")
    return {name: loaders[name](config, device) for name in sorted(names)}


def resolve_clip(config: dict, device: str | torch.device) -> ClipModel:
    """The CLIP model for concepts: the world's trained one, or an open_clip folder / "hf-hub:id" / arch (+ file)."""
    from preimage.engine.models import load_clip

    return _load_model(config, "clip", load_clip, device)


def resolve_perceptual(config: dict, device: str | torch.device) -> Lpips:
    """LPIPS as `perceptual` configures it."""
    from preimage.engine.models import load_lpips

    return load_lpips(**config["perceptual"], device=device)


def resolve_prior(config: dict, device: str | torch.device, class_name: str | None = None) -> DiffusionPrior:
    """The diffusion prior, with `{class_name}` in its prompts filled by `class_name` (see `class_text`).

    `source: world` is the world's pixel prior. Otherwise `source` is a diffusers pipeline folder or a Hub id
    ("org/name[@revision]", optionally "hf-hub:"-prefixed) read from the Hugging Face cache; the folder's
    model_index.json `_class_name` picks the prior (PIPELINES); a folder without one but with unet/ and
    scheduler/ (the world's training layout) is a pixel prior.
    """
    from preimage.engine import priors
    from preimage.utils.devices import resolve_dtype

    settings = model_settings(config, "prior")
    dtype = resolve_dtype("models.prior.dtype", settings["dtype"], device)
    if settings["source"] == WORLD:
        folder, prior_class = Path(model_dir(config, "prior")), PIXEL_PRIOR
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
        dtype=dtype,
    )
    return prior.to(device)


PROMPTING = ("prompt", "negative_prompt", "cfg_scale")  # the prior settings only a text-conditioned prior reads


def unconditional(config: dict) -> dict:
    """`config` with the prior's prompts empty and classifier-free guidance off: its unconditional model, for a step
    that treats images of every class alike (a global direction inverts and edits them all with one prior; DDIM
    inversion is exact only without guidance). A pixel prior is unconditional already and stays as it is."""
    defaults = schema_defaults("models", "prior")
    prior = {**config["models"]["prior"], **{key: defaults[key] for key in PROMPTING}}
    return {**config, "models": {**config["models"], "prior": prior}}


def _check_unconditional(settings: dict) -> None:
    """A pixel prior has no prompt: refuse settings that would silently do nothing."""
    defaults = schema_defaults("models", "prior")
    unused = {key: settings[key] for key in PROMPTING if settings[key] != defaults[key]}
    if unused:
        raise ValueError(
            f"models.prior: {unused} do not apply to an unconditional pixel prior (source {settings['source']!r}); "
            f"leave them at {({key: defaults[key] for key in unused})}"
        )


def prompts_by_class(config: dict) -> bool:
    """Whether the prior's prompt (or negative prompt) names `{class_name}`: it is then prompted per source class,
    and its unconstrained draws (the reference, the rejection pool) are drawn per class."""
    settings = model_settings(config, "prior")
    return CLASS_NAME in settings["prompt"] + settings["negative_prompt"]


def objective_prompt_class(spec: dict, source_class: str, class_names: Sequence[str] = ()) -> str:
    """The class a class-prompted prior is prompted with for an objective's sets: a label counterfactual's target
    class, by name or by its index in `class_names` (the classifier's; its members are meant to look like the target,
    and a prompt naming the source's class would hold the source's shape against the guidance), else the source's
    class (also for a list of targets, any of which the members may be)."""
    target = label_target(spec)
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(class_names):
        return class_names[target]
    return target if isinstance(target, str) and target != "source" else source_class


def counterfactual_targets(objectives: dict[str, dict], class_names: Sequence[str] = ()) -> list[str]:
    """The classes the label counterfactuals among `objectives` (`sets.objectives`) name as their targets, an index
    named through `class_names`."""
    return sorted({objective_prompt_class(spec, "", class_names) for spec in objectives.values()} - {""})


def prompt_targets(config: dict) -> list[str]:
    """`counterfactual_targets` while the run is planned: a target given by index is named through the classifier's
    metadata, read only when some target is an index."""
    objectives = config["sets"]["objectives"]
    by_index = any(isinstance(label_target(spec), int) for spec in objectives.values())
    return counterfactual_targets(objectives, (classifier_label_names(config) or ()) if by_index else ())


def prompt_classes(source_classes: Collection[str], targets: Collection[str]) -> list[str]:
    """Every class a class-prompted prior is prompted with: the sources' classes and the counterfactuals' `targets`
    (the unconstrained draws, reference and pool, are drawn for each)."""
    return sorted(set(source_classes) | set(targets))


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
    from preimage.engine.models import MissingWeightsError
    from preimage.engine.models.hub import (
        COPY_CACHE_HINT,
        cached_snapshot,
        download_command,
        snapshot_path,
        split_revision,
    )

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
    """The `preimage.engine.priors` class name that loads a diffusers folder, by model_index.json `_class_name`."""
    index = folder / PIPELINE_INDEX
    if not index.is_file():
        if (folder / "unet").is_dir() and (folder / "scheduler").is_dir():
            return PIXEL_PRIOR
        raise ValueError(f"models.prior.source folder {str(folder)!r}: no {PIPELINE_INDEX} and no unet/ + scheduler/ "
                         "folders")
    pipeline = json.loads(index.read_text()).get("_class_name")
    if pipeline not in PIPELINES:
        raise ValueError(
            f"models.prior.source folder {str(folder)!r}: pipeline {pipeline!r} is not supported; expected one of "
            f"{list(PIPELINES)}"
        )
    return PIPELINES[pipeline]


def classifier_label_names(config: dict) -> list[str] | None:
    """The classifier's class names from its metadata alone (no weights loaded), or None when it has none.

    The same names `load_classifier` attaches as `label_names`: the config's, else ImageNet synsets when the
    class count matches an ImageNet subset.
    """
    settings = model_settings(config, "classifier")
    if settings["source"] == WORLD:
        return list(WorldSpec.from_config(config["world"]).shapes)
    from timm.data import ImageNetInfo, infer_imagenet_subset  # a second of imports the world's names do not need
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

    from preimage.engine.models import MissingWeightsError
    from preimage.engine.models.hub import (
        COPY_CACHE_HINT,
        cached_file,
        download_command,
        snapshot_path,
    )

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
