"""Steps of the concept analysis: CLIP embeddings, the classifier's predictions, each group's clusters, scores
and map, and the data-only baseline.

The analysis code is imported inside the steps that use it (the clustering, map and scoring code imports
scikit-learn and SciPy), and torch only by the steps that run a model, so each job imports only its own: every
Snakemake job is a new process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from preimage.pipeline.concepts import (
    concept_vocabulary,
    model_identity,
    settings_from_config,
)
from preimage.pipeline.models import (
    class_text,
    resolve_classifier,
    resolve_clip,
    resolve_named_models,
    resolve_prior,
)
from preimage.utils.images import to_uint8
from preimage.utils.io import atomic_path, write_npy, write_parquet

if TYPE_CHECKING:
    import torch

    from preimage.analysis.concepts.groups import Group
    from preimage.analysis.concepts.interventions import Interventions


def torch_for(device: str, threads: int) -> torch.device:
    """Import torch (only the steps that run a model do), give it `threads` threads and resolve `device`."""
    import torch

    from preimage.utils.devices import resolve_device

    torch.set_num_threads(threads)
    return resolve_device(device)


def embed_vocabulary(vocabulary: str, prompt_template: str, class_template: str, shapes: Sequence[str] | None,
                     config: dict, device: str, table: str | PathLike, text: str | PathLike,
                     threads: int) -> pd.DataFrame:
    """Embed the concept vocabulary (`concepts.vocabulary`, see `concept_vocabulary`) and one prompt per class
    of the explained classifier with CLIP: the embeddings as Parquet (`table`), the vocabulary as read as
    text (`text`). A classifier without class names cannot be prompted and raises."""
    from preimage.analysis.concepts.embeddings import vocabulary_table
    from preimage.analysis.concepts.vocabulary import format_vocabulary

    torch_device = torch_for(device, threads)
    classifier = resolve_classifier(config, torch_device)
    if not classifier.label_names:
        raise ValueError("models.classifier: the classifier has no label names, so its classes cannot be prompted")
    concepts = concept_vocabulary(vocabulary, prompt_template, shapes)
    texts = [class_text(classifier, name) for name in classifier.label_names]
    embedded = vocabulary_table(resolve_clip(config, torch_device), concepts, classifier.label_names, texts,
                                class_template, model_identity(config, "clip"))
    write_parquet(embedded, table)
    with atomic_path(text) as tmp:
        tmp.write_text(format_vocabulary(concepts))
    print(f"{len(concepts)} concepts and {len(texts)} class prompts embedded")
    return embedded


def embed_sets(set_dirs: Sequence[str | PathLike], output: str | PathLike, config: dict, device: str,
               batch_size: int, threads: int) -> pd.DataFrame:
    """CLIP embeddings of the accepted members and the source of each set folder in `set_dirs` (a group's
    sets, or the reference), as Parquet; kept when `output` already holds them from the same model."""
    from preimage.analysis.concepts.embeddings import embed_directories, load_or_embed

    torch_device = torch_for(device, threads)
    model = model_identity(config, "clip")
    table = load_or_embed(output, model, lambda: embed_directories(
        set_dirs, resolve_clip(config, torch_device), model, batch_size))
    print(f"{len(table)} images of {len(set_dirs)} directories embedded")
    return table


def embed_real_images(table: str | PathLike, images: str | PathLike, output: str | PathLike, config: dict,
                      device: str, batch_size: int, threads: int) -> pd.DataFrame:
    """CLIP embeddings of every real image of a split (its Parquet `table` and uint8 `images`), with its
    `class_name`, as Parquet; kept when `output` already holds them from the same model."""
    from preimage.analysis.concepts.embeddings import embed_array, load_or_embed
    from preimage.pipeline.sources import real_image_table

    torch_device = torch_for(device, threads)
    model = model_identity(config, "clip")
    rows = real_image_table(pd.read_parquet(table))
    embedded = load_or_embed(output, model, lambda: embed_array(
        rows, np.load(images), resolve_clip(config, torch_device), model, batch_size))
    print(f"{len(embedded)} images embedded")
    return embedded


def predict_real_images(table: str | PathLike, images: str | PathLike, output: str | PathLike, config: dict,
                        device: str, threads: int) -> pd.DataFrame:
    """The explained classifier's predictions on a real-image split (its Parquet `table` and uint8
    `images`), as Parquet, for the data-only baseline."""
    from preimage.analysis.concepts.predictions import predictions_table
    from preimage.pipeline.sources import real_image_table

    torch_device = torch_for(device, threads)
    classifier = resolve_classifier(config, torch_device)
    rows = real_image_table(pd.read_parquet(table))
    predictions = predictions_table(rows, np.load(images), classifier, torch_device)
    write_parquet(predictions, output)
    print(f"accuracy {(predictions['label'] == predictions['prediction']).mean():.3f} on {len(predictions)} images")
    return predictions


def predict_reference(members: str | PathLike, output: str | PathLike, config: dict, device: str, batch_size: int,
                      threads: int, regressors: Sequence[str] = ()) -> pd.DataFrame:
    """The explained classifier's predicted class (column prediction) and each of the `regressors`' output (column
    `output_column(name)`) for every accepted image of the reference sample (its `members` table), as Parquet: the
    spurious-feature scorer's decision effect and call rate compare within the reference."""
    from preimage.analysis.concepts.embeddings import read_png_images
    from preimage.analysis.concepts.predictions import output_column, predicted_names
    from preimage.utils.devices import predict

    torch_device = torch_for(device, threads)
    classifier = resolve_classifier(config, torch_device)
    table = pd.read_parquet(members)
    table = table[table["accepted"]]
    root = Path(members).parent
    pixels = read_png_images([root / image for image in table["image"]])
    predictions = pd.DataFrame({"image": table["image"].to_numpy(),
                                "prediction": predicted_names(classifier, pixels, torch_device, batch_size)})
    for name, model in resolve_named_models(config, torch_device, regressors).items():
        predictions[output_column(name)] = predict(model, pixels, torch_device, batch_size).reshape(-1).numpy()
        print(f"{name}: median output {np.median(predictions[output_column(name)]):.3f}")
    write_parquet(predictions, output)
    print(predictions["prediction"].value_counts().to_string())
    return predictions


# what a group's analysis imports: imported by the job before its worker processes are forked (`map_in_processes`)
GROUP_ANALYSIS_MODULES = ("preimage.pipeline.steps.concepts", "preimage.analysis.concepts.clustering",
                          "preimage.analysis.concepts.maps", "preimage.analysis.concepts.spurious")


@dataclass(frozen=True)
class GroupInputs:
    """What every group's analysis reads (`analyse_group`): the tables of the concept step's earlier jobs and the
    config's concepts sections (`clusters` and `spurious` as concepts.clusters and concepts.spurious)."""

    vocabulary: str
    embeddings: str
    reference: str
    reference_predictions: str
    real: str | None
    synonyms: Mapping[str, Sequence[str]]
    clusters: Mapping
    spurious: Mapping
    map_points: int


@dataclass(frozen=True)
class GroupTask:
    """One group's analysis: its group, the groups it is compared with instead of the reference, the model whose
    output confirms its flags (both as in `analyse_group`) and where its tables go (`group_tables`)."""

    inputs: GroupInputs
    group: Group
    contrast: tuple[Group, ...]
    regressor: str | None
    tables: Mapping[str, str]


def analyse_groups(vocabulary: str, embeddings: str, reference: str, reference_predictions: str, real: str | None,
                   groups: Mapping[str, Group], objectives: Mapping[str, Mapping],
                   synonyms: Mapping[str, Sequence[str]], cluster_settings: Mapping, spurious_settings: Mapping,
                   map_points: int, dirs: Mapping[str, str], table: str | PathLike, workers: int = 1) -> pd.DataFrame:
    """Every group's analysis (`analyse_group`, whose arguments these are), its tables in the folders `dirs`
    (`preimage.pipeline.layout.group_tables`), on up to `workers` processes that import scikit-learn once; then
    every group's scores in one table (`collect_spurious`) at `table`. `groups` by slug; `objectives` as
    sets.objectives, which name the groups a regression counterfactual's group is compared with and its model."""
    from preimage.pipeline.layout import group_tables
    from preimage.pipeline.workflow import contrast_groups, output_model
    from preimage.utils.parallel import map_in_processes

    inputs = GroupInputs(vocabulary, embeddings, reference, reference_predictions, real, synonyms, cluster_settings,
                         spurious_settings, map_points)
    tasks = [GroupTask(inputs, group, tuple(groups[other] for other in contrast_groups(groups, slug)),
                       output_model(objectives, group), group_tables(slug, dirs)) for slug, group in groups.items()]
    largest_first = sorted(tasks, key=lambda task: len(task.group.set_ids), reverse=True)  # the workers end together
    results = map_in_processes(analyse_task, largest_first, workers, GROUP_ANALYSIS_MODULES)
    for task, (_, printed) in zip(largest_first, results):
        print(f"== group {task.group.name}\n{printed}", end="")
    return collect_spurious([task.tables["scores"] for task in tasks], inputs.embeddings, list(groups.values()),
                            inputs.vocabulary, inputs.reference, inputs.reference_predictions, inputs.synonyms,
                            inputs.spurious, table)


def analyse_task(task: GroupTask) -> None:
    """`analyse_group` for one task (what a worker runs)."""
    inputs = task.inputs
    analyse_group(inputs.vocabulary, inputs.embeddings, inputs.reference, inputs.reference_predictions, inputs.real,
                  task.group, inputs.synonyms, inputs.clusters, inputs.spurious, inputs.map_points, task.tables,
                  contrast=task.contrast, regressor=task.regressor)


def analyse_group(vocabulary: str | PathLike, embeddings: str | PathLike, reference: str | PathLike,
                  reference_predictions: str | PathLike, real: str | PathLike | None, group: Group,
                  synonyms: Mapping[str, Sequence[str]], cluster_settings: Mapping, spurious_settings: Mapping,
                  map_points: int, tables: Mapping[str, str | PathLike],
                  contrast: Sequence[Group] = (), regressor: str | None = None) -> None:
    """One concept group's analysis from the `embeddings` of every group's sets: cluster its sets (pooled and one
    by one) and name the clusters by the vocabulary; rank the vocabulary's concepts by how much the group's decision
    depends on them, against the reference and the classifier's calls on it (or, with `contrast`, the groups it is
    compared with instead: a regression counterfactual's other direction, whose flags are then confirmed on the
    output of the model named `regressor` on the reference); lay out its 2-D embedding map (with the `real` images'
    embeddings when given). `cluster_settings` and `spurious_settings` are the config's concepts.clusters and
    concepts.spurious sections. Writes the assignments, clusters, scores and map as Parquet, to the paths `tables`
    names so (`preimage.pipeline.layout.group_tables`)."""
    from preimage.analysis.concepts.clustering import ClusterSettings, cluster_pool
    from preimage.analysis.concepts.embeddings import (
        EmbeddedVocabulary,
        embedding_matrix,
        generated_members,
        sets_rows,
    )
    from preimage.analysis.concepts.groups import MOVED_UP
    from preimage.analysis.concepts.maps import group_map
    from preimage.analysis.concepts.spurious import (
        SpuriousSettings,
        confirm_on_reference,
        output_calls,
        score_group,
    )

    embedded = EmbeddedVocabulary.from_table(pd.read_parquet(vocabulary))
    every_group, reference_table = pd.read_parquet(embeddings), pd.read_parquet(reference)
    pool = sets_rows(every_group, group.set_ids)
    real_table = pd.read_parquet(real) if real is not None else None
    clustering = settings_from_config(ClusterSettings, cluster_settings, "concepts.clusters")
    scoring = settings_from_config(SpuriousSettings, spurious_settings, "concepts.spurious")
    assignments, named = cluster_pool(pool, embedded.text, embedded.concepts, embedded.logit_scale, clustering)
    predictions = pd.read_parquet(reference_predictions)
    compared = sets_rows(every_group, [s for other in contrast for s in other.set_ids]) if contrast else reference_table
    scores = score_group(pool, compared, embedded, group, synonyms, scoring, predictions)
    if regressor is not None:
        reference_members = generated_members(reference_table)
        calls = output_calls(reference_members, predictions, regressor, upward=group.kind == MOVED_UP)
        scores = confirm_on_reference(scores, embedding_matrix(reference_members), calls, embedded, scoring)
    embedding_map = group_map(pool, assignments, reference_table, map_points, clustering.seed, real_table, group.core)
    write_parquet(assignments, tables["assignments"])
    write_parquet(named, tables["clusters"])
    write_parquet(scores, tables["scores"])
    write_parquet(embedding_map, tables["map"])
    print(named[["scope", "cluster", "size", "k", "name"]].to_string())
    print(scores.sort_values("rank").drop(columns="evidence").head(10).to_string())


def collect_spurious(tables: Sequence[str | PathLike], embeddings: str | PathLike,
                     groups: Sequence[Group], vocabulary: str | PathLike, reference: str | PathLike,
                     reference_predictions: str | PathLike, synonyms: Mapping[str, Sequence[str]],
                     spurious_settings: Mapping, output: str | PathLike) -> pd.DataFrame:
    """Every group's spurious-feature scores (`tables`, with `groups` in the same order) in one table; with
    concepts.spurious.mirrors, the class groups' flags that are mirror images of another class's finding are
    marked (`preimage.analysis.concepts.mirrors`, on the `embeddings` of every group's sets) and their flags
    withdrawn."""
    from preimage.analysis.concepts.embeddings import (
        EmbeddedVocabulary,
        embedding_matrix,
        generated_members,
        sets_rows,
    )
    from preimage.analysis.concepts.mirrors import ClassGroupEvidence, mark_mirrors
    from preimage.analysis.concepts.spurious import SpuriousSettings, called
    from preimage.analysis.concepts.vocabulary import extrinsic_mask

    settings = settings_from_config(SpuriousSettings, spurious_settings, "concepts.spurious")
    stacked = pd.concat([pd.read_parquet(p) for p in tables], ignore_index=True).assign(mirror_of="")
    if settings.mirrors:
        embedded = EmbeddedVocabulary.from_table(pd.read_parquet(vocabulary))
        reference_table = generated_members(pd.read_parquet(reference))
        reference_embeddings = embedding_matrix(reference_table)
        predictions = pd.read_parquet(reference_predictions)
        every_group = pd.read_parquet(embeddings)
        evidence = {}
        for group in groups:
            if group.kind == "class":
                members = generated_members(sets_rows(every_group, group.set_ids))
                evidence[group.name] = ClassGroupEvidence(
                    group.name, group.core, embedding_matrix(members), members["set_id"].to_numpy(),
                    reference_embeddings, called(reference_table, predictions, group.core))
        candidates = extrinsic_mask(embedded.concepts, embedded.class_names(synonyms))
        stacked = mark_mirrors(stacked, evidence, embedded, candidates, settings)
    write_parquet(stacked, output)
    mirrors = stacked[stacked["mirror_of"] != ""]
    print(f"{int(stacked['flagged'].sum())} flag(s); {len(mirrors)} mirror(s)")
    for row in mirrors.itertuples():
        print(f"  {row.concept} ({row.group}): mirror of {row.mirror_of}")
    return stacked


def score_baseline(vocabulary: str | PathLike, embeddings: str | PathLike, predictions: str | PathLike,
                   groups: str | PathLike, synonyms: Mapping[str, Sequence[str]], spurious_settings: Mapping,
                   output: str | PathLike) -> pd.DataFrame:
    """The data-only baseline: the vocabulary's concepts scored on the real test images the classifier gets wrong
    against those it gets right (their CLIP `embeddings` and its `predictions`), for the classes that are the core
    of a concept group (the `groups` table of the concepts_groups checkpoint), with `spurious_settings` (the
    config's concepts.spurious section), as Parquet."""
    from preimage.analysis.concepts.baseline import baseline_scores
    from preimage.analysis.concepts.embeddings import (
        EmbeddedVocabulary,
        embedding_matrix,
    )
    from preimage.analysis.concepts.spurious import SpuriousSettings
    from preimage.pipeline.workflow import read_groups

    classes = sorted({group.core for group in read_groups(groups).values() if group.kind == "class"})
    embedded = EmbeddedVocabulary.from_table(pd.read_parquet(vocabulary))
    images = pd.read_parquet(embeddings).merge(
        pd.read_parquet(predictions)[["image_id", "prediction"]], on="image_id", validate="1:1")
    table = baseline_scores(embedding_matrix(images), images["class_name"], images["prediction"], images["image_id"],
                            embedded, classes, synonyms,
                            settings_from_config(SpuriousSettings, spurious_settings, "concepts.spurious"))
    write_parquet(table, output)
    print(table[table["flagged"]].drop(columns="evidence").to_string())
    return table


def write_groups(config: dict, set_ids: Sequence[str], members: Sequence[str | PathLike], groups: str | PathLike,
                 calls: str | PathLike) -> pd.DataFrame:
    """The concept groups of the run (`groups`, one row per set) once the call-keeping sets `set_ids` are
    drawn (their `members` tables, in the same order), and the model's call on each of their sources (`calls`)."""
    from preimage.pipeline.workflow import groups_table, run_groups, source_calls

    called = source_calls(config, dict(zip(set_ids, members)))
    table = groups_table(run_groups(config, called))
    write_parquet(called, calls)
    write_parquet(table, groups)
    wrong = called[called["source_class"] != called["model_class"]].drop_duplicates("source_id")
    for row in wrong.itertuples():
        print(f"source {row.source_id} ({row.source_class}): the model calls it {row.model_class}")
    return table


def intervene_on_concepts(scores: str | PathLike, vocabulary: str | PathLike, reference: str | PathLike,
                          config: dict, settings: Mapping, table_output: str | PathLike,
                          images_output: str | PathLike, threads: int) -> pd.DataFrame:
    """Concept interventions (`preimage.analysis.concepts.interventions`, `settings` the config's
    concepts.interventions section): the best candidates of each class and regression group's `scores` added to or
    removed from the first reference images (each under its own prompt, for a class-prompted prior), with the
    classifier's class probabilities and each regressor's output on every edit and its null twin. Writes the table
    as Parquet and the images as uint8 (concepts x images, 3 [source, edit, null], H, W, 3)."""
    from preimage.analysis.concepts.embeddings import EmbeddedVocabulary, read_png_images
    from preimage.analysis.concepts.groups import MOVED_DOWN, MOVED_UP
    from preimage.analysis.concepts.interventions import (
        ClipSpace,
        InterventionSettings,
        concepts_to_test,
        intervene,
    )
    from preimage.pipeline.steps.sets import class_prompts

    device = torch_for(config["device"], threads)
    edits = settings_from_config(InterventionSettings, _tuples(settings), "concepts.interventions")
    concepts = concepts_to_test(pd.read_parquet(scores), edits.concepts_per_group, ("class", MOVED_UP, MOVED_DOWN))
    members = pd.read_parquet(reference)
    members = members[members["accepted"]].head(edits.images).reset_index(drop=True)
    images = read_png_images([Path(reference).parent / image for image in members["image"]]).to(device)
    clip = resolve_clip(config, device)
    space = ClipSpace.from_vocabulary(clip.encode_images, EmbeddedVocabulary.from_table(pd.read_parquet(vocabulary)),
                                      concepts)
    readouts = model_readouts(config, device)
    prompts = class_prompts(config, device, sorted(set(members["source_class"])))
    prior = resolve_prior(config, device, class_name=next(iter(prompts.values()))[2] if prompts else None)
    parts = []
    for prompt_class, rows in members.groupby("source_class", sort=True):  # a class-prompted prior: its own prompt
        if prompts:
            prior.set_prompt(*prompts[prompt_class][:2])
        part = intervene(prior, space, images[rows.index.to_numpy()], concepts, readouts, edits)
        parts.append((rows.index.to_numpy(), part))
    table, pixels = _joined(parts, images, len(concepts))
    table = table.assign(reference_image=members["image"].to_numpy()[table["image"]])
    write_parquet(table, table_output)
    write_npy(to_uint8(pixels.flatten(0, 2)).reshape(*pixels.shape[:3], *pixels.shape[-2:], 3), images_output)
    print(table.groupby("concept", sort=False).agg(edits=("success", "size"), success=("success", "mean"),
                                                   strength=("strength", "mean")).to_string())
    return table


def _joined(parts: Sequence[tuple[np.ndarray, Interventions]], images: torch.Tensor,
            concepts: int) -> tuple[pd.DataFrame, torch.Tensor]:
    """The interventions of the prompt classes' images as one table (image indices into `images`, rows by concept
    then image) and one (concepts, images, 3 [source, edit, null], 3, H, W) tensor."""
    import torch

    pixels = torch.stack([images.unsqueeze(0).expand(concepts, *images.shape)] * 3, dim=2).clone()
    tables = []
    for indices, part in parts:
        n = len(indices)
        pixels[:, indices, 1] = part.edits.reshape(concepts, n, *images.shape[1:]).to(pixels.device)
        pixels[:, indices, 2] = part.nulls.reshape(concepts, n, *images.shape[1:]).to(pixels.device)
        tables.append(part.table.assign(image=indices[part.table["image"].to_numpy()]))
    order = {name: k for k, name in enumerate(dict.fromkeys(parts[0][1].table["concept"]))}
    table = pd.concat(tables, ignore_index=True)
    table = table.sort_values(["concept", "image"], key=lambda c: c.map(order) if c.name == "concept" else c)
    return table.reset_index(drop=True), pixels


def model_readouts(config: dict, device: torch.device) -> dict:
    """What interventions read from the explained models: each class's probability under the classifier, and the
    output of each model the regression objectives name."""
    from preimage.pipeline.config import models_named, regression_objectives

    classifier = resolve_classifier(config, device)
    readouts = {name: _class_probability(classifier, k) for k, name in enumerate(classifier.label_names)}
    regressors = models_named(regression_objectives(config["sets"]["objectives"]))
    for name, model in resolve_named_models(config, device, regressors).items():
        readouts[name] = _scalar_output(model)
    return readouts


def _class_probability(classifier: torch.nn.Module, k: int):
    return lambda images: classifier(images).softmax(dim=1)[:, k]


def _scalar_output(model: torch.nn.Module):
    return lambda images: model(images).reshape(len(images), -1)[:, 0]


def _tuples(section: Mapping) -> dict:
    """A config section with its lists as tuples, as the settings dataclasses hold them; without `enabled`, which
    says whether the step runs at all."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in section.items()
            if key != "enabled"}


def estimate_effects(interventions: str | PathLike, settings: Mapping, regression: Sequence[str],
                     output: str | PathLike) -> pd.DataFrame:
    """Each tested concept's effect on every readout with its bootstrap interval, and the findings they support
    (`preimage.analysis.concepts.effects`, `settings` the config's concepts.effects section), as Parquet.
    `regression` names the readouts that are a regressor's
    output (the others are class probabilities)."""
    from preimage.analysis.concepts.effects import EffectSettings, concept_effects, findings

    estimate = settings_from_config(EffectSettings, settings, "concepts.effects")
    table = findings(concept_effects(pd.read_parquet(interventions), estimate), estimate, regression)
    write_parquet(table, output)
    print(table[table["verdict"] != "none"].to_string())
    return table
