"""Concept interventions: edit images so that a concept appears (or disappears) and read the models' response.

The invariant-set scores are correlational: a concept enriched in a class's sets may be one the model needs, or
one that comes along with what it needs, or the mirror image of a concept it avoids. An intervention asks the
model directly. For each concept worth testing (the top candidates of each group's scores), every image of a
pool (the run's reference samples) is edited once:

- an image CLIP says lacks the concept gets it added, one that has it gets it removed. Presence is a CLIP
  similarity above the concept's *threshold*, the midpoint between the 10th and 90th percentiles of the pool's
  similarities, so a concept that half the pool shows splits it where its two modes part;
- the edit is a late start from the noised image, guided through the denoiser (DPS) by the concept objective
  (`preimage.engine.objectives.concept`), optionally with an L1 pull towards the image (DVCE's distance term), at
  the first strength of `strengths` that succeeds: adding a tag needs little noise, changing a background's colour
  more;
- its *null* twin is the same chain from the same start noise with the same pull towards the image, without the
  concept's guidance: what regenerating the image at that noise level changes by itself. The pair differs in the
  concept and in little else;
- an edit *succeeds* when CLIP reads the concept on the right side of its threshold and CLIP's zero-shot class
  of the edit is that of its null twin, so an edit that turns the shape into another class's is not counted as
  adding a background.

Each success gives, for every readout (a class's probability, a regressor's output), the paired difference
"with the concept minus without it": edit minus null when adding, null minus edit when removing. Effects and
findings are estimated from these differences in `preimage.analysis.concepts.effects`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from preimage.analysis.concepts.effects import ADD, REMOVE
from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
from preimage.analysis.concepts.statistics import presence_threshold
from preimage.engine.objectives import Concept
from preimage.engine.objectives import concept as concept_objective
from preimage.engine.priors.base import DiffusionPrior
from preimage.engine.samplers import GuidedSampler, RejectionSampler

Readout = Callable[[Tensor], Tensor]
"""Images -> (B,) response of a model: a class's probability, a regressor's output."""


@dataclass(frozen=True)
class InterventionSettings:
    """Knobs of the edits; config concepts.interventions maps onto these fields."""

    images: int = 32
    concepts_per_group: int = 2
    strengths: tuple[float, ...] = (0.6, 0.8)
    guidance_scale: float = 0.6
    guidance_interval: tuple[float, float] = (0.2, 1.0)
    distance_weight: float = 0.0
    margin: float = 0.05
    num_steps: int = 20
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 2 or self.concepts_per_group < 1 or self.batch_size < 1:
            raise ValueError("interventions: images must be >= 2, concepts_per_group and batch_size >= 1, got "
                             f"{self.images}, {self.concepts_per_group}, {self.batch_size}")
        if not self.strengths or any(not 0 < s < 1 for s in self.strengths) or list(self.strengths) != sorted(self.strengths):
            raise ValueError(f"interventions: strengths must be increasing numbers in (0, 1), got {self.strengths}")


@dataclass(frozen=True)
class ClipSpace:
    """What the edits need of CLIP: the image encoder, the tested concepts' and the classes' text embeddings."""

    encode: Callable[[Tensor], Tensor]
    concept_text: Mapping[str, Tensor]
    class_text: Tensor

    @classmethod
    def from_vocabulary(cls, encode: Callable[[Tensor], Tensor], vocabulary: EmbeddedVocabulary,
                        concepts: Sequence[str]) -> ClipSpace:
        """The space of a run's embedded vocabulary, for the `concepts` to test."""
        unknown = sorted(set(concepts) - set(vocabulary.concepts))
        if unknown:
            raise ValueError(f"interventions: concept(s) {unknown} are not in the vocabulary")
        text = {name: torch.from_numpy(vocabulary.text[vocabulary.concepts.index(name)]) for name in concepts}
        return cls(encode, text, torch.from_numpy(vocabulary.class_text))

    @torch.no_grad()
    def similarity(self, images: Tensor, concept: str) -> Tensor:
        """(B,) cosine similarity of each image to the concept."""
        return self.encode(images).float() @ self.concept_text[concept].to(images.device).float()

    @torch.no_grad()
    def class_call(self, images: Tensor) -> Tensor:
        """(B,) CLIP's zero-shot class of each image."""
        return (self.encode(images).float() @ self.class_text.to(images.device).float().T).argmax(1)


def concepts_to_test(scores: pd.DataFrame, per_group: int, kinds: Sequence[str]) -> list[str]:
    """The concepts worth an intervention: the `per_group` best-ranked candidates of every group of `kinds`,
    in order of first appearance by rank."""
    missing = sorted({"group", "kind", "concept", "extrinsic", "rank"} - set(scores.columns))
    if missing:
        raise ValueError(f"spurious scores lack column(s) {missing}")
    top = scores[scores["extrinsic"] & scores["kind"].isin(kinds) & (scores["rank"] >= 1)
                 & (scores["rank"] <= per_group)]
    return list(dict.fromkeys(top.sort_values(["rank", "group"])["concept"]))


@dataclass(frozen=True)
class Interventions:
    """The edits of a pool of images: one table row per (concept, image) and, in the same order, the edited
    images and their null twins (N, 3, H, W) in [0, 1]."""

    table: pd.DataFrame
    edits: Tensor
    nulls: Tensor


def intervene(
    prior: DiffusionPrior,
    clip: ClipSpace,
    images: Tensor,
    concepts: Sequence[str],
    readouts: Mapping[str, Readout],
    settings: InterventionSettings,
) -> Interventions:
    """Edit every image for every concept. A table row holds the concept, image index, direction, strength used,
    success, CLIP similarity of source, edit and null, and per readout its value on the edit and the null and the
    difference with the concept minus without it."""
    if not concepts:
        raise ValueError("interventions: no concept to test")
    parts = [_intervene_concept(prior, clip, images, name, readouts, settings, index)
             for index, name in enumerate(concepts)]
    return Interventions(pd.concat([p.table for p in parts], ignore_index=True),
                         torch.cat([p.edits for p in parts]), torch.cat([p.nulls for p in parts]))


def _intervene_concept(prior: DiffusionPrior, clip: ClipSpace, images: Tensor, concept: str,
                       readouts: Mapping[str, Readout], settings: InterventionSettings, index: int) -> Interventions:
    source_similarity = clip.similarity(images, concept)
    threshold = float(presence_threshold(source_similarity.cpu().numpy()))
    present = source_similarity.cpu() > threshold
    table = pd.DataFrame({"concept": concept, "image": np.arange(len(images)), "threshold": threshold,
                          "direction": np.where(present.numpy(), REMOVE, ADD),
                          "source_similarity": source_similarity.cpu().numpy()})
    edits, nulls = torch.empty_like(images), torch.empty_like(images)
    parts = []
    for direction in (ADD, REMOVE):
        chosen = (present if direction == REMOVE else ~present).nonzero().flatten()
        if len(chosen):
            seed = settings.seed + 1000 * index + (direction == REMOVE)
            edited = _edit_with_escalation(prior, clip, images[chosen], concept, threshold, direction, readouts,
                                           settings, seed)
            parts.append(edited.table.assign(image=chosen.numpy()))
            edits[chosen], nulls[chosen] = edited.edits.to(images.device), edited.nulls.to(images.device)
    table = table.merge(pd.concat(parts, ignore_index=True), on="image").sort_values("image", ignore_index=True)
    return Interventions(table, edits, nulls)


def _edit_with_escalation(prior: DiffusionPrior, clip: ClipSpace, images: Tensor, concept: str, threshold: float,
                          direction: str, readouts: Mapping[str, Readout], settings: InterventionSettings,
                          seed: int) -> Interventions:
    """Edit each image at the first strength that succeeds; an image no strength edits keeps its last try."""
    objective = concept_objective(clip.encode, clip.concept_text[concept], target=threshold, direction=direction,
                                  margin=settings.margin, name=concept)
    first, *later = settings.strengths
    edits, nulls = _edit_pair(prior, objective, images, first, settings, seed)
    result = _judge(clip, concept, threshold, direction, edits, nulls).assign(strength=first)
    for strength in later:
        todo = np.flatnonzero(~result["success"].to_numpy(bool))
        if len(todo) == 0:
            break
        edit, null = _edit_pair(prior, objective, images[todo], strength, settings, seed)
        result.iloc[todo] = _judge(clip, concept, threshold, direction, edit, null).assign(strength=strength).to_numpy()
        edits[todo], nulls[todo] = edit, null
    result = result.astype({"success": bool, "class_kept": bool, "strength": float})
    return Interventions(pd.concat([result, _responses(readouts, edits, nulls, direction)], axis=1), edits, nulls)


def _edit_pair(prior: DiffusionPrior, objective: Concept, images: Tensor, strength: float,
               settings: InterventionSettings, seed: int) -> tuple[Tensor, Tensor]:
    """The guided edit of each image and its twin: the same chain from the same start noise, with the same pull
    towards the image where `distance_weight` > 0, without the concept's guidance, so only the guidance differs.
    Without a pull the twin is the plain DDIM chain, which needs no gradient."""
    guided = GuidedSampler(num_steps=settings.num_steps, guidance_scale=settings.guidance_scale, strength=strength,
                           guidance_interval=settings.guidance_interval, distance_weight=settings.distance_weight,
                           through_denoiser=True, restarts=0, batch_size=settings.batch_size)
    edit = guided.edit(prior, objective, images, torch.Generator().manual_seed(seed)).images
    if settings.distance_weight > 0:  # the pull alone: an objective every image satisfies (similarity >= -1)
        anything = concept_objective(objective.encoder, objective.text, target=-1.0 - objective.margin,
                                     margin=objective.margin, name=objective.concept_name)
        twin = guided.edit(prior, anything, images, torch.Generator().manual_seed(seed)).images
    else:
        plain = RejectionSampler(num_steps=settings.num_steps, strength=strength, batch_size=settings.batch_size)
        twin = plain.edit(prior, objective, images, torch.Generator().manual_seed(seed)).images
    return edit, twin


def _judge(clip: ClipSpace, concept: str, threshold: float, direction: str, edit: Tensor, null: Tensor) -> pd.DataFrame:
    """Per edit: CLIP similarity of edit and null, and success (concept on the asked side, class kept)."""
    edit_similarity = clip.similarity(edit, concept).cpu().numpy()
    null_similarity = clip.similarity(null, concept).cpu().numpy()
    on_side = edit_similarity > threshold if direction == ADD else edit_similarity <= threshold
    class_kept = (clip.class_call(edit) == clip.class_call(null)).cpu().numpy()
    return pd.DataFrame({"edit_similarity": edit_similarity, "null_similarity": null_similarity,
                         "class_kept": class_kept, "success": on_side & class_kept})


@torch.no_grad()
def _responses(readouts: Mapping[str, Readout], edits: Tensor, nulls: Tensor, direction: str) -> pd.DataFrame:
    """Each readout on edit and null, and its difference with the concept minus without it."""
    sign = 1.0 if direction == ADD else -1.0
    columns = {}
    for name, readout in readouts.items():
        on_edit, on_null = readout(edits).float().cpu().numpy(), readout(nulls).float().cpu().numpy()
        columns[f"edit:{name}"], columns[f"null:{name}"] = on_edit, on_null
        columns[f"difference:{name}"] = sign * (on_edit - on_null)
    return pd.DataFrame(columns)
