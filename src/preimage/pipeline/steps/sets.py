"""Steps that draw the invariant sets, the prior's reference sample and the shared pool, and check the objectives.

The engine's samplers and sets (which import diffusers) are imported inside the steps that draw: every Snakemake
job is a new process. Choosing the source images is `preimage.pipeline.steps.sources`, which imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from preimage.pipeline.config import cone_samplers, models_named, objective_samplers
from preimage.pipeline.models import (
    class_text,
    counterfactual_targets,
    fill_prompt,
    model_settings,
    objective_prompt_class,
    prompt_classes,
    prompts_by_class,
    resolve_classifier,
    resolve_named_models,
    resolve_perceptual,
    resolve_prior,
    resolve_robust,
)
from preimage.pipeline.sources import load_source_images
from preimage.utils.devices import resolve_device

if TYPE_CHECKING:
    from preimage.engine.priors import DiffusionPrior
    from preimage.engine.samplers.rejection import DrawPool

CHECK_IMAGE_SEED = 0  # the noise image `check_objectives` binds each objective to


@dataclass(frozen=True)
class SetJobModels:
    """The models a set job loads once for all its sources, and their device."""

    device: torch.device
    classifier: torch.nn.Module
    named: dict[str, torch.nn.Module]
    prior: DiffusionPrior
    perceptual: torch.nn.Module
    robust: torch.nn.Module | None


def generate_invariant_sets(source_ids: Sequence[str], sources: str | PathLike, out_root: str | PathLike,
                            config: dict, threads: int, pool: str | PathLike | None = None) -> list[Path]:
    """Every objective's and sampler's invariant set for each of `source_ids` (rows of the `sources` table), the
    objectives and samplers of `config["sets"]`, the models loaded once for them all. The sets are written as
    folders <set id>/ under `out_root`; complete ones are kept.

    With `pool` (the members table of the shared pool or the reference sample, `sets.rejection_pool`), a
    rejection sampler that would draw what the pool drew (pure noise, its steps and eta) tests the pool's draws
    instead of drawing its own (`preimage.engine.samplers.PooledRejectionSampler`)."""
    torch.set_num_threads(threads)
    device = resolve_device(config["device"])
    table = pd.read_parquet(sources)
    missing = sorted(set(source_ids) - set(table["image_id"]))
    if missing:
        raise ValueError(f"sources {missing} are not in {str(sources)!r}")
    rows = [table[table["image_id"] == source_id] for source_id in source_ids]  # one-row tables
    classifier = resolve_classifier(config, device)
    models = SetJobModels(
        device=device,
        classifier=classifier,
        named=resolve_named_models(config, device, models_named(config["sets"]["objectives"])),
        prior=resolve_prior(config, device, class_name=class_text(classifier, rows[0].iloc[0]["class_name"])),
        perceptual=resolve_perceptual(config, device),
        robust=resolve_robust(config, device) if cone_samplers(config["sets"]) else None,  # for a sampler with a cone
    )
    draws = {}  # the pool's draws by prompt class, read once for every source of the job
    written = []
    for row in rows:
        written += _source_sets(row, models, config, Path(out_root), pool, draws)
    return written


def _source_sets(row: pd.DataFrame, models: SetJobModels, config: dict, out_root: Path, pool: str | PathLike | None,
                 draws: dict[str, DrawPool]) -> list[Path]:
    """Every objective's and sampler's set for the source of `row` (a one-row table), written under `out_root`;
    `draws` caches the pool's draws by prompt class across the job's sources."""
    from preimage.engine.objectives.spec import from_config as objective_from_config
    from preimage.engine.samplers.spec import from_config as sampler_from_config
    from preimage.engine.sets import generate_sets

    sets, prior = config["sets"], models.prior
    source_class = row.iloc[0]["class_name"]
    source = load_source_images(config, row, prior.image_size).to(models.device)
    class_names = models.classifier.label_names or ()
    targets = counterfactual_targets(sets["objectives"], class_names)
    prompts = class_prompts(config, models.device, prompt_classes([source_class], targets), models.classifier)
    written = []
    for objective_name, spec in sets["objectives"].items():
        prompt_class = objective_prompt_class(spec, source_class, class_names) if prompts else ""
        if prompts and (prior.prompt, prior.negative_prompt) != prompts[prompt_class][:2]:
            prior.set_prompt(*prompts[prompt_class][:2])  # encoded only when the objective's class differs
        if pool is not None and prompt_class not in draws:
            draws[prompt_class] = _read_pool(pool, prompt_class)
        where = f"sets.objectives.{objective_name}"
        objective = objective_from_config(spec, models.classifier, models.named, where=where)
        _bind_checked(objective, source, where)  # an error of the objective on this source names it
        overridden = sets["sampler_overrides"].get(objective_name, {})
        samplers = {name: sampler_from_config(sampler, models.perceptual, robust=models.robust,
                                              where=f"sets.sampler_overrides.{objective_name}.{name}"
                                              if name in overridden else f"sets.samplers.{name}")
                    for name, sampler in objective_samplers(sets, objective_name).items()}
        if prompt_class in draws:
            samplers = _pooled(samplers, draws[prompt_class], sets["members"])
        folders = generate_sets(source, row.iloc[0].to_dict(), objective_name, objective, samplers, prior,
                                sets["members"], sets["seed"], models.perceptual, out_root)
        for folder in folders:
            print(_set_line(folder))
        written += folders
    return written


def _set_line(folder: Path) -> str:
    """One line of a set job's log: the set, its acceptance and its sampling time."""
    summary = pd.read_parquet(folder / "summary.parquet").iloc[0]
    return (f"{folder.name}: {summary['accepted']} of {summary['members']} members accepted, "
            f"{summary['seconds']:.1f} s of sampling")


def class_prompts(config: dict, device: torch.device, classes: Sequence[str],
                  classifier: torch.nn.Module | None = None) -> dict[str, tuple[str, str, str]]:
    """{class: (prompt, negative prompt, class text)} of a prior whose prompt names {class_name}; {} for a prior
    without a class prompt, which draws every class alike. The classifier names the classes: `classifier` if
    loaded, else loaded on `device`."""
    if not prompts_by_class(config):
        return {}
    settings = model_settings(config, "prior")
    classifier = resolve_classifier(config, device) if classifier is None else classifier
    texts = {name: class_text(classifier, name) for name in classes}
    return {name: (fill_prompt(settings["prompt"], text), fill_prompt(settings["negative_prompt"], text), text)
            for name, text in texts.items()}


def _read_pool(pool: str | PathLike, prompt_class: str) -> DrawPool:
    """The draws for `prompt_class` of the prior sample whose members table is `pool` (`preimage.engine.sets.draw_pool`)."""
    from preimage.engine.sets import draw_pool, read_set

    return draw_pool(read_set(Path(pool).parent), prompt_class)


def _pooled(samplers: dict, pool: DrawPool, members: int) -> dict:
    """`samplers` with every rejection sampler the pool's draws serve replaced by one that tests those draws (a
    pool smaller than a set keeps the sampler drawing its own)."""
    from preimage.engine.samplers import PooledRejectionSampler

    served = {name for name, sampler in samplers.items() if pool.serves(sampler)}
    if served and len(pool) < members:
        print(f"samplers {sorted(served)} draw their own: the pool has {len(pool)} draws for this class, "
              f"fewer than sets.members ({members})")
        return samplers
    for name in sorted(served):
        print(f"sampler {name!r} tests {len(pool)} pooled draws instead of drawing its own")
    return {name: PooledRejectionSampler(pool, sampler.batch_size) if name in served else sampler
            for name, sampler in samplers.items()}


def _bind_checked(objective, image: torch.Tensor, where: str) -> None:
    """Bind `objective` to `image` and test it there once (a unit out of range, a 2-D layer given a
    location, a class index past the model's outputs raise only then), naming `where` in an error."""
    try:
        with torch.no_grad():
            objective.bind(image).accept(image)
    except (ValueError, TypeError) as error:
        message = str(error)
        raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def check_objectives(config: dict, output: str | PathLike) -> dict[str, str]:
    """Build every objective of `sets.objectives` on the classifier and bind those that read it to one noise
    image at its input size, so a bad layer name, class name or unit fails here, once, before any set job
    loads the models; raise one ValueError naming each bad objective's key path. Image-space objectives
    (lowpass, masked) are built but not bound: their sizes are the prior's, which this step does not load.
    Writes {objective: its name} as JSON to `output` (the marker the set jobs wait for)."""
    from preimage.engine.objectives.spec import MODEL_KINDS, leaves
    from preimage.engine.objectives.spec import from_config as objective_from_config

    torch.set_num_threads(1)
    classifier = resolve_classifier(config, "cpu")
    named = resolve_named_models(config, "cpu", models_named(config["sets"]["objectives"]))
    size = tuple(getattr(classifier, "data_config", {}).get("input_size", (3, 224, 224)))[-2:]
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(CHECK_IMAGE_SEED))
    names, problems = {}, []
    for name, spec in config["sets"]["objectives"].items():
        where = f"sets.objectives.{name}"
        try:
            objective = objective_from_config(spec, classifier, named, where=where)
            for part_where, part in leaves(spec, where):
                if part["kind"] in MODEL_KINDS:
                    _bind_checked(objective_from_config(part, classifier, named, where=part_where), image, part_where)
            names[name] = objective.name
        except (ValueError, TypeError) as error:
            problems.append(str(error))
    if problems:
        raise ValueError(f"{len(problems)} of {len(names) + len(problems)} objectives do not fit the classifier "
                         "(models.classifier):\n  " + "\n  ".join(problems))
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(names, indent=2, sort_keys=True) + "\n")
    for name, objective in sorted(names.items()):
        print(f"{name}: {objective}")
    return names


def draw_reference_samples(sources: str | PathLike, members: str | PathLike, config: dict, threads: int) -> None:
    """Draw the prior's unconstrained reference sample (`config["reference"]`) into the folder of `members`.

    With a class-templated prompt (latent priors), the one prior is re-prompted for each class of the
    `sources` table and each of `config["prompt_targets"]` (the counterfactuals' targets), so the reference shares
    each set's prompt (see `preimage.engine.sets.reference_set`).
    """
    reference = config["reference"]
    _draw_prior_sample(sources, members, config, threads, reference["members"], reference["seed"])


def draw_rejection_pool(sources: str | PathLike, members: str | PathLike, config: dict, threads: int) -> None:
    """Draw the shared pool of pure-noise prior draws that rejection sets test (`sets.rejection_pool`, kind
    `shared`) into the folder of `members`: drawn as the reference is (its steps, a class's draws under that
    class's prompt), from a seed of its own, so the pool and the reference are independent samples."""
    from preimage.engine.sets import set_seed

    pool = config["sets"]["rejection_pool"]
    _draw_prior_sample(sources, members, config, threads, pool["members"], set_seed(pool["seed"], "rejection_pool"),
                       "rejection_pool")


def _draw_prior_sample(sources: str | PathLike, members: str | PathLike, config: dict, threads: int, n: int,
                       seed: int, set_id: str = "reference") -> None:
    """n unconstrained prior draws (`reference_set`, the reference's `num_steps` and `solver`) into the folder of
    `members`; `prompt_targets` is absent for a prior without class prompts."""
    from preimage.engine.sets import reference_set, write_set

    torch.set_num_threads(threads)
    device = resolve_device(config["device"])
    classes = prompt_classes(pd.read_parquet(sources)["class_name"].unique(), config.get("prompt_targets", ()))
    prompts = class_prompts(config, device, classes)
    prior = resolve_prior(config, device, class_name=next(iter(prompts.values()))[2] if prompts else None)
    prompts = {name: (prompt, negative) for name, (prompt, negative, _) in prompts.items()} if prompts else None
    reference = config["reference"]
    result = reference_set(prior, n, seed, reference["num_steps"], prompts, set_id, reference["solver"])
    write_set(result, Path(members).parent)
