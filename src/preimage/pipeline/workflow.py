"""Glue between Snakemake rules and the library: model locations, what each rule depends on, per-rule logs."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from preimage.analysis.concepts.groups import (
    SET_ID_SEPARATOR,
    Group,
    concept_groups,
    contrast_kind,
    keeps_the_call,
    objective_name,
)
from preimage.pipeline.config import (
    MODEL_KINDS,
    ConfigError,
    cone_samplers,
    models_named,
    set_kinds,
    world_models,
    world_section,
)
from preimage.pipeline.models import (
    classifier_label_names,
    model_files,
    prompt_classes,
    prompt_targets,
    prompts_by_class,
)
from preimage.pipeline.sources import WORLD_PREFIX, select_sources_from_config


# glibc malloc settings for the jobs: freed blocks up to 32 MiB stay on the heap, and the heap's top is handed back
# to the system only above 1 GiB free. With glibc's defaults a CPU sampler's activations (megabytes each, freed
# every step) are unmapped and mapped again as fresh zeroed pages at every denoiser pass: the world's UNet then
# spends a tenth of its time in the kernel's page faults (docs/benchmarks.md). Both are set or neither: either
# alone turns off glibc's adaptive threshold and makes it worse.
ALLOCATOR_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def set_allocator_environment(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Put ALLOCATOR_ENVIRONMENT into `environ`, which the jobs Snakemake starts inherit, unless the user has
    set either variable (their settings are kept as they are); return what was set."""
    if any(name in environ for name in ALLOCATOR_ENVIRONMENT):
        return {}
    environ.update(ALLOCATOR_ENVIRONMENT)
    return dict(ALLOCATOR_ENVIRONMENT)


def resolved_device(name: str) -> str:
    """`device` as the rules see it when the workflow is planned: 'auto' is 'cuda' where this machine sees a
    GPU, so a local run on a GPU machine asks for GPUs (`--resources gpu=N`). Torch is imported to tell only
    where a GPU driver is installed: planning a run, which every job on a cluster does again, then costs no
    torch import on a machine without one."""
    if name != "auto":
        return name
    if not gpu_driver_present():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# What a GPU that torch can use as "cuda" leaves on Linux: NVIDIA's driver, ROCm's kernel driver, WSL's GPU device.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def gpu_driver_present() -> bool:
    """Whether this machine may have a CUDA (or ROCm) device: a driver's file on Linux; macOS has none; on other
    systems only torch can tell, so True."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(Path(path).exists() for path in GPU_DRIVER_PATHS)


def config_source(overlays, overrides: dict | None = None) -> str:
    """How config errors name the configuration: config.yaml, the --configfile overlays merged onto it and, where
    given, the --config overrides."""
    files = ["config.yaml", *(str(path) for path in overlays or ())]
    return " + ".join(files) + (" (with --config overrides)" if overrides else "")


def canonical(value: Any) -> Any:
    """`value` with every dict's keys sorted, recursively. Snakemake compares a rule's params by their repr, so
    params built from config sections through here do not change when only the config's key order does."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def model_config(config: dict, *kinds: str) -> dict:
    """The config a rule needs to load the `kinds` models (default: all): their `models` entries, the device
    and, when one of them is a world model, the world and training settings that name its folder."""
    kinds = kinds or tuple(kind for kind in MODEL_KINDS if kind in config["models"])
    part: dict[str, Any] = {"device": config["device"], "models": {kind: config["models"][kind] for kind in kinds}}
    if set(kinds) & set(world_models(config)):
        # the robust model's and the regressor's training settings (and the regressor's task) only for rules that
        # load them: changing them reruns no other rule
        training = {key: value for key, value in config["training"].items()
                    if key not in ("robust", "regressor") or key in kinds}
        part |= {"world": world_section(config, kinds), "training": training}
    return canonical(part)


def set_job_models(config: dict) -> tuple[str, ...]:
    """The models a set job loads: the classifier and the prior, the robust classifier where a sampler of
    `sets.samplers` (or `sets.sampler_overrides`) has a cone (`cone_angle`), and the models objectives name in
    their `model` field (the regressor)."""
    cone = ("robust",) if cone_samplers(config["sets"]) else ()
    return ("classifier", "prior", *cone, *models_named(config["sets"]["objectives"]))


def real_model_files(config: dict, *kinds: str) -> list[str]:
    """The files of the real (non-world) `kinds` models, as rule inputs: replacing a model's weights reruns
    the rules that use it. World models are inputs through their training rules instead. Each model's folder
    is listed once per parse, though every job of a rule asks."""
    return sorted({file for kind in kinds for file in _model_files(json.dumps(canonical(config["models"][kind])), kind)})


@functools.lru_cache(maxsize=8)
def _model_files(settings: str, kind: str) -> tuple[str, ...]:
    return tuple(model_files({"models": {kind: json.loads(settings)}}, kind))


@functools.lru_cache(maxsize=8)
def _selection(settings: str) -> pd.DataFrame:
    return select_sources_from_config(json.loads(settings))


def select_sources(config: dict) -> pd.DataFrame:
    """The source images of the invariant sets, as `sets.sources` selects them (once per parse: the rules
    ask for it many times)."""
    part = {key: config[key] for key in ("models", "sets", "world") if key in config}
    return _selection(json.dumps(canonical(part))).copy()


def source_files(config: dict) -> dict[str, str]:
    """{image_id: image file} of the selected sources read from files (none for the world's)."""
    selection = select_sources(config)
    on_disk = ~selection["source"].str.startswith(WORLD_PREFIX)
    return dict(zip(selection.loc[on_disk, "image_id"], selection.loc[on_disk, "source"]))


def check_pool_size(config: dict, classes: Sequence[str]) -> None:
    """A class-prompted prior's shared pool is split over the classes it is prompted with (the sources' `classes` and
    the counterfactuals' targets): refuse, before anything is drawn, a pool whose share of a class is smaller than a
    set, since every set would then draw its own and the pool be drawn for nothing."""
    pool, members = config["sets"]["rejection_pool"], config["sets"]["members"]
    prompts = len(prompt_classes(classes, prompt_targets(config))) if prompts_by_class(config) else 1
    per_class = -(-pool["members"] // prompts)
    if pool["kind"] == "shared" and per_class < members:
        raise ConfigError(f"sets.rejection_pool.members: {pool['members']} draws split over the prior's {prompts} "
                          f"class prompts give {per_class} per class, fewer than sets.members ({members}), so no set "
                          f"could test them; give at least {prompts * members}, or kind none")


def set_ids(config: dict) -> list[str]:
    """Every invariant set: '<source_id>__<objective>__<sampler>', each objective for each source, with each
    sampler that draws it (`set_kinds`).

    A label counterfactual is drawn from every source, also from one the model already calls its target: that set
    is a sample of what the model calls the target, and joins that class's group with the label sets.
    """
    kinds = set_kinds(config["sets"])
    return [f"{source}__{objective}__{sampler}" for source in select_sources(config)["image_id"]
            for objective, sampler in kinds]


def set_jobs(config: dict) -> dict[str, list[str]]:
    """{job id: its source ids}: the set jobs, each drawing every set of up to `sets.sources_per_job` sources of one
    class, in the selection's order; a job is named by its first source. Keeping a job to one class means adding
    sources to a class redraws no other class's job, and a class-prompted prior keeps one prompt per job."""
    per_job = config["sets"]["sources_per_job"]
    jobs = {}
    for _, sources in select_sources(config).groupby("class_name", sort=False):
        ids = list(sources["image_id"])
        for start in range(0, len(ids), per_job):
            jobs[ids[start]] = ids[start:start + per_job]
    return jobs


def set_class(config: dict, set_id: str) -> str:
    """The class of a set's source image (its label in the selection: the ground truth in the world)."""
    source_id = set_id.split(SET_ID_SEPARATOR)[0]
    sources = select_sources(config).set_index("image_id")
    return str(sources.loc[source_id, "class_name"])


def call_keeping_set_ids(config: dict) -> list[str]:
    """The sets whose objective keeps the model's call on the source: their group is the class the model
    assigns the source, known once the set is drawn."""
    objectives = config["sets"]["objectives"]
    return [set_id for set_id in set_ids(config) if keeps_the_call(objectives[objective_name(set_id)])]


def called_class(target: Any, label_names: Sequence[str] | None) -> str:
    """The class name of a set's bound target: a class index (label) or a score vector (logits, probs)."""
    values = np.asarray(target)
    index = int(values.argmax()) if values.ndim else int(values)
    return label_names[index] if label_names and index < len(label_names) else str(index)


def source_calls(config: dict, members: Mapping[str, str | Path]) -> pd.DataFrame:
    """Per call-keeping set (set id -> its members.parquet): its source, the source's class and the class the
    model assigns the source (the target the set kept)."""
    names = classifier_label_names(config) or _selection_names(config)
    rows = []
    for set_id, path in sorted(members.items()):
        first = pd.read_parquet(path, columns=["source_id", "target"]).iloc[0]
        rows.append({"set_id": set_id, "source_id": first["source_id"], "source_class": set_class(config, set_id),
                     "model_class": called_class(first["target"], names)})
    return pd.DataFrame(rows, columns=["set_id", "source_id", "source_class", "model_class"])


def _selection_names(config: dict) -> list[str]:
    """Class names by index from the selection itself, for a classifier without names of its own."""
    selection = select_sources(config)
    size = int(selection["label"].max()) + 1
    names = dict(zip(selection["label"], selection["class_name"]))
    return [str(names.get(i, i)) for i in range(size)]


def groups_settings(config: dict) -> dict:
    """What the groups step reads of the config (its job's params): the world, the sources, the classifier, the
    objectives and which samplers draw each (`sets.samplers` with `sets.sampler_overrides`, where `false` drops a
    sampler's sets), so that `run_groups` names exactly the run's sets."""
    sets = {key: config["sets"][key] for key in ("sources", "objectives", "samplers", "sampler_overrides")}
    world = {key: config[key] for key in ("world",) if key in config}
    return world | {"sets": sets, "models": {"classifier": config["models"]["classifier"]}}


def run_groups(config: dict, calls: pd.DataFrame) -> dict[str, Group]:
    """The concept groups of the run's sets by slug (`preimage.analysis.concepts.groups.concept_groups`), with
    call-keeping sets in the group of the class the model assigns their source (`calls`, from `source_calls`)."""
    model_class = dict(zip(calls["set_id"], calls["model_class"]))

    def called(set_id: str) -> str:
        return model_class.get(set_id) or set_class(config, set_id)

    return concept_groups(set_ids(config), called, config["sets"]["objectives"])


def groups_table(groups: Mapping[str, Group]) -> pd.DataFrame:
    """One row per set: its group's slug, name, kind and core class."""
    rows = [{"set_id": set_id, "slug": slug, "group": group.name, "kind": group.kind, "core": group.core}
            for slug, group in groups.items() for set_id in group.set_ids]
    return pd.DataFrame(rows, columns=["set_id", "slug", "group", "kind", "core"])


def contrast_groups(groups: Mapping[str, Group], slug: str) -> list[str]:
    """The slugs of the groups that group `slug` is scored against instead of the reference: for a regression
    counterfactual, every group of the opposite direction (`contrast_kind`); none for any other group."""
    other = contrast_kind(groups[slug].kind)
    return [name for name, group in groups.items() if other is not None and group.kind == other]


def output_model(objectives: Mapping[str, Mapping], group: Group) -> str | None:
    """The model whose output on the reference confirms the flags of a regression counterfactual's group (its
    objective's `model`, `objectives` as sets.objectives); None for any other group."""
    if contrast_kind(group.kind) is None:
        return None
    return objectives[group.name]["model"]


def read_groups(table: str | Path) -> dict[str, Group]:
    """The groups `groups_table` wrote, by slug."""
    frame = pd.read_parquet(table)
    groups = {}
    for slug, rows in frame.groupby("slug", sort=True):
        first = rows.iloc[0]
        core = first["core"] if isinstance(first["core"], str) else None
        groups[slug] = Group(first["group"], first["kind"], core, tuple(rows["set_id"]))
    return groups
