"""Steps of the global counterfactual directions (`directions`): for each target class, one direction in the prior's
latent found with the classifier's outputs alone, its flip rate and distance on held-out images of every other class
and what it changes according to CLIP (explanation); what it changes according to the world's oracle (evaluation
only). Their figures are drawn by `preimage.pipeline.steps.report`, which imports no torch.

The engine, CLIP and the figures are imported inside the steps that use them: every Snakemake job is a new process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import fields
from os import PathLike
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from preimage.pipeline.models import (
    model_dir,
    resolve_classifier,
    resolve_clip,
    resolve_perceptual,
    resolve_prior,
    unconditional,
)
from preimage.pipeline.sources import real_image_table
from preimage.utils.devices import resolve_device
from preimage.utils.images import to_tensor, to_uint8
from preimage.utils.io import write_json, write_npy, write_parquet

if TYPE_CHECKING:
    from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
    from preimage.engine.directions import DirectionSettings, Scorer

ALL = "all"  # the summary row over every held-out image


def direction_settings(section: Mapping) -> DirectionSettings:
    """The engine's search settings from the config's `directions` section."""
    from preimage.engine.directions import DirectionSettings

    return DirectionSettings(**{field.name: section[field.name] for field in fields(DirectionSettings)})


def check_target(target: str, classes: list[str] | None) -> int:
    """The index of class `target` among the classifier's `classes`; a ValueError naming the key otherwise."""
    if not classes:
        raise ValueError("directions.targets: the classifier has no class names (label_names) to name a target by")
    if target not in classes:
        raise ValueError(f"directions.targets: {target!r} is not a class of the classifier; its classes are "
                         f"{classes[:20]} (a global direction flips a class decision; regression targets are not "
                         "supported)")
    return classes.index(target)


def split_images(table: pd.DataFrame, target: str, section: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the training images (`train_per_class` of every class, the target's included: the
    search's start compares the images the classifier calls the target with the others) and of the held-out
    images (`heldout_per_class` of every other class, none of them training images), drawn with `seed`."""
    rng = np.random.default_rng(section["seed"])
    train, heldout = [], []
    for name in sorted(table["class_name"].unique()):
        rows = rng.permutation(np.flatnonzero(table["class_name"].to_numpy() == name))
        wanted = section["train_per_class"] + (section["heldout_per_class"] if name != target else 0)
        if len(rows) < wanted:
            raise ValueError(f"directions: the split {section['split']!r} has {len(rows)} images of class {name!r}, "
                             f"fewer than directions.train_per_class + heldout_per_class ({wanted}); lower them")
        train.append(rows[: section["train_per_class"]])
        if name != target:
            heldout.append(rows[section["train_per_class"] : wanted])
    return np.concatenate(train), np.concatenate(heldout)


def find_global_direction(target: str, table: str | PathLike, images: str | PathLike, vocabulary: str | PathLike,
                          config: dict, outputs: Mapping[str, str | PathLike], threads: int) -> pd.DataFrame:
    """Find the global direction towards class `target` on a real-image split (its Parquet `table` and uint8
    `images`), apply it to the held-out images and describe its change with CLIP's `vocabulary` table.

    Writes to `outputs`: `direction` (.npy, the unit-RMS latent edit), `trace` (the search), `heldout` (per
    held-out image: its class, the classifier's call on it, on its reconstruction and after the edit, LPIPS),
    `summary` (per source class and over all: flip rate, the reconstruction's as a control, distances, CLIP's
    call), `concepts` (CLIP concept shift), `search` (JSON: settings, training flip rates, wall and CPU seconds) and the
    held-out `originals`, `reconstructed` and `edited` images (.npy, uint8)."""
    from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
    from preimage.analysis.directions import concept_shift
    from preimage.engine.directions import edit, find_direction, invert, regenerate

    started, cpu_started = time.perf_counter(), time.process_time()
    torch.set_num_threads(threads)
    device = resolve_device(config["device"])
    section = config["directions"]
    classifier = resolve_classifier(config, device)
    target_index = check_target(target, getattr(classifier, "label_names", None))
    rows = real_image_table(pd.read_parquet(table))
    train, heldout = split_images(rows, target, section)
    prior = resolve_prior(unconditional(config), device)  # one prior for the images of every class
    pixels = to_tensor(np.load(images))
    originals = torch.nn.functional.interpolate(pixels, size=prior.image_size, mode="bilinear", antialias=True,
                                                align_corners=False) if pixels.shape[-1] != prior.image_size else pixels
    settings = direction_settings(section)

    def score(batch: torch.Tensor) -> torch.Tensor:
        return classifier(batch.to(device)).softmax(1)

    search_started = time.perf_counter()
    direction = find_direction(prior, score, originals[train], target_index, settings)
    searched = time.perf_counter() - search_started
    latents = invert(prior, originals[heldout], settings)
    versions = {"original": originals[heldout], "reconstruction": regenerate(prior, latents, settings).cpu(),
                "edited": edit(prior, latents, direction.vector, settings).cpu()}
    vocabulary_table = EmbeddedVocabulary.from_table(pd.read_parquet(vocabulary))
    held, (before, after) = _measure(rows.iloc[heldout].reset_index(drop=True), versions, score, target_index,
                                     classifier.label_names, vocabulary_table, config, device, settings.batch_size)
    summary, concepts = summarise(held, target), concept_shift(before, after, vocabulary_table)
    write_npy(direction.vector.cpu().numpy(), outputs["direction"])
    for name, frame in (("trace", direction.trace), ("heldout", held), ("summary", summary), ("concepts", concepts)):
        write_parquet(frame, outputs[name])
    for name, version in (("originals", "original"), ("reconstructed", "reconstruction"), ("edited", "edited")):
        write_npy(to_uint8(versions[version]), outputs[name])
    trace = direction.trace
    write_json({"target": target, "settings": {field.name: getattr(settings, field.name) for field in fields(settings)},
                "train_images": len(train), "train_flip_rate_start": float(trace["flip_rate"].iloc[0]),
                "train_flip_rate": float(trace["flip_rate"][trace["objective"].idxmax()]),
                "classifier_calls": int(trace["calls"].iloc[-1]), "search_seconds": round(searched, 2),
                "seconds": round(time.perf_counter() - started, 2),
                "cpu_seconds": round(time.process_time() - cpu_started, 2)}, outputs["search"])
    print(trace.to_string(index=False))
    print(summary.to_string(index=False))
    print(concepts.head(5).to_string(index=False))
    print(f"search {searched:.1f} s, step {time.perf_counter() - started:.1f} s")
    return summary


def _measure(held: pd.DataFrame, versions: Mapping[str, torch.Tensor], score: Scorer, target: int, names: list[str],
             vocabulary: EmbeddedVocabulary, config: dict, device: torch.device,
             batch_size: int) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The held-out images' table with the classifier's calls on each version (`_calls`), LPIPS from the original
    and from the reconstruction to the edit, and CLIP's call before (the reconstruction) and after the edit; and
    the CLIP embeddings of the reconstructions and the edits."""
    from preimage.analysis.concepts.embeddings import embed_images
    from preimage.analysis.directions import zero_shot_classes

    perceptual = resolve_perceptual(config, device)
    edited = versions["edited"].to(device)
    with torch.no_grad():
        distances = {f"lpips_to_{version}": perceptual(versions[version].to(device), edited).cpu().numpy()
                     for version in ("original", "reconstruction")}
    clip = resolve_clip(config, device)
    before, after = embed_images(clip, versions["reconstruction"]), embed_images(clip, versions["edited"])
    held = held.assign(**_calls(score, versions, target, names, batch_size), **distances,
                       clip_before=zero_shot_classes(before, vocabulary), clip_after=zero_shot_classes(after, vocabulary))
    return held, (before, after)


def _calls(score: Scorer, versions: Mapping[str, torch.Tensor], target: int, names: list[str],
           batch_size: int) -> dict[str, np.ndarray]:
    """The classifier's call on each version of the held-out images (`call_<version>`), and its target
    probability on the edited ones."""
    from preimage.engine.directions import probabilities

    calls = {}
    for version, pictures in versions.items():
        outputs = probabilities(score, pictures, batch_size)
        calls[f"call_{version}"] = np.asarray(names)[outputs.argmax(1).numpy()]
        if version == "edited":
            calls["target_probability"] = outputs[:, target].numpy()
    return calls


def summarise(held: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per source class and over all held-out images: the share the classifier calls `target` after the edit
    (`flip_rate`) and after the reconstruction alone (`reconstruction_flip_rate`, the control), the mean LPIPS to
    the original and to the reconstruction, and the share CLIP calls `target` before and after the edit."""
    def rates(part: pd.DataFrame) -> dict:
        return {"images": len(part),
                "flip_rate": float((part["call_edited"] == target).mean()),
                "reconstruction_flip_rate": float((part["call_reconstruction"] == target).mean()),
                "original_called_target": float((part["call_original"] == target).mean()),
                "lpips_to_original": float(part["lpips_to_original"].mean()),
                "lpips_to_reconstruction": float(part["lpips_to_reconstruction"].mean()),
                "clip_target_before": float((part["clip_before"] == target).mean()),
                "clip_target_after": float((part["clip_after"] == target).mean())}

    table = [{"target": target, "source_class": name, **rates(part)} for name, part in held.groupby("class_name")]
    return pd.DataFrame([*table, {"target": target, "source_class": ALL, **rates(held)}])


def evaluate_direction(reconstructed: str | PathLike, edited: str | PathLike, config: dict, output: str | PathLike,
                       threads: int) -> pd.DataFrame:
    """What the direction changes according to the world's attribute oracle (evaluation only): per attribute,
    over the held-out images' reconstructions and edits, the share whose reading changes and the value gained."""
    from preimage.world.directions import attribute_changes
    from preimage.world.oracle import load_oracle

    torch.set_num_threads(threads)
    oracle = load_oracle(model_dir(config, "oracle"))
    changes = attribute_changes(oracle, to_tensor(np.load(reconstructed)), to_tensor(np.load(edited)),
                                tuple(config["world"]["shapes"]))
    write_parquet(changes, output)
    print(changes.to_string(index=False))
    return changes
