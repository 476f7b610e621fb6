"""Rank vocabulary concepts by how much a model's decision depends on them, from generated images alone.

For a group of invariant sets (all sets of a class, or of one neuron objective) and each concept c with
CLIP similarity s(x, c):

- enrichment: AUROC of s(., c) on the group's accepted members against the reference (unconstrained
  samples of the same prior), as the effect 2 * AUROC - 1 in [-1, 1]. For a class, the reference is
  restricted to the samples CLIP zero-shot assigns to that class ("matched"): the comparison then asks
  "among images of a square, which concepts does the model's square set have more often?", so nothing
  that merely co-occurs with the shape in CLIP's space (or in the prior) is counted. With fewer than
  `min_reference` matched samples the whole reference is used and the row says so.
- extrinsicness: concepts naming an explained class (the class itself, its synonyms, or another class)
  are never candidates: a class is not its own shortcut, and another class is a confusion.
- reliance: among members the model accepts although CLIP finds the core class weak (zero-shot
  probability below `weak_core_probability`), the share in which c is present (s above the reference
  median), as the effect 2 * share - 1. A concept the model falls back on when the class itself is not
  visible is one it relies on. Only used with at least `min_weak` such members.

The score is the enrichment effect, averaged with the reliance effect where that is measured. A
candidate is flagged when its score exceeds both `min_effect` and the (1 - alpha) quantile of the
largest candidate score under shuffled member/reference labels: the permutation null keeps the chance of
flagging anything in a group with no real enrichment at alpha, and the minimum effect keeps small but
significant shifts (e.g. other backgrounds rising when one background is avoided) from being flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from preimage.concepts.clustering import zero_shot_probabilities
from preimage.concepts.embeddings import EmbeddedVocabulary, embedding_matrix
from preimage.concepts.pool import core_class, invariant_members
from preimage.concepts.statistics import (
    auroc,
    auroc_from_ranks,
    flag,
    null_threshold,
    pooled_ranks,
    rank_candidates,
)
from preimage.concepts.vocabulary import extrinsic_mask


@dataclass(frozen=True)
class SpuriousSettings:
    """Knobs of the scorer; config concepts.spurious maps onto these fields."""

    permutations: int = 500
    alpha: float = 0.05
    min_effect: float = 0.2
    min_reference: int = 20
    min_weak: int = 10
    weak_core_probability: float = 0.5
    evidence: int = 6
    seed: int = 0

    @classmethod
    def from_config(cls, section: dict) -> SpuriousSettings:
        unknown = sorted(set(section) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"concepts.spurious: unknown key(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**section)


@dataclass(frozen=True)
class _Comparison:
    """Members and the reference they are compared with, as one pooled similarity matrix."""

    similarity: np.ndarray
    """(n + m, T) concept similarities, members first."""
    is_member: np.ndarray
    weak: np.ndarray | None
    """(n + m,) whether CLIP finds the core class weak in each image; None without a core class."""
    reference_kind: str


def score_concepts(
    members: np.ndarray,
    reference: np.ndarray,
    vocabulary: EmbeddedVocabulary,
    core: str | None,
    candidates: Sequence[bool],
    member_sets: Sequence[str],
    settings: SpuriousSettings = SpuriousSettings(),
) -> pd.DataFrame:
    """One row per vocabulary concept: enrichment, reliance, score, rank, threshold and flag.

    `members` (n, D) and `reference` (m, D) are unit-norm CLIP embeddings; `core` is the class the sets
    keep (None for neuron objectives: whole reference, no reliance); `candidates` marks extrinsic concepts;
    `member_sets` names each member's set, for `set_consistency`: the share of sets whose members score
    higher than the reference (AUROC > 0.5), since a shortcut is kept by every set and a source's own
    look only by its set.
    """
    candidates = np.asarray(candidates, dtype=bool)
    if len(candidates) != len(vocabulary.concepts):
        raise ValueError(f"candidates: expected {len(vocabulary.concepts)} flags, one per concept, got {len(candidates)}")
    if len(members) < 2 or len(reference) < 2:
        raise ValueError(f"need at least 2 members and 2 reference images, got {len(members)} and {len(reference)}")
    comparison = _compare(members, reference, vocabulary, core, settings)
    ranks = pooled_ranks(comparison.similarity)
    weak_members = 0 if comparison.weak is None else int((comparison.weak & comparison.is_member).sum())
    use_reliance = weak_members >= settings.min_weak

    def statistic(masks: np.ndarray) -> np.ndarray:
        enrichment = 2 * auroc_from_ranks(ranks, masks) - 1
        if not use_reliance:
            return enrichment
        return np.nanmean(np.stack([enrichment, _reliance(comparison, masks, settings.min_weak)]), axis=0)

    observed = comparison.is_member[None]
    score = statistic(observed)[0]
    enrichment = 2 * auroc_from_ranks(ranks, observed)[0] - 1
    reliance = _reliance(comparison, observed, settings.min_weak)[0] if use_reliance else np.full(len(score), np.nan)
    threshold = null_threshold(statistic, comparison.is_member, candidates, settings.permutations, settings.alpha,
                               settings.seed)
    flagged = flag(score, candidates, threshold, settings.min_effect)
    return pd.DataFrame({
        "concept": vocabulary.concepts,
        "extrinsic": candidates,
        "enrichment": enrichment,
        "reliance": reliance,
        "score": np.where(candidates, score, np.nan),
        "rank": rank_candidates(score, candidates),
        "null_threshold": threshold,
        "threshold": max(threshold, settings.min_effect),
        "flagged": flagged,
        "members": int(comparison.is_member.sum()),
        "reference": int((~comparison.is_member).sum()),
        "reference_kind": comparison.reference_kind,
        "weak_members": weak_members,
        "set_consistency": _set_consistency(comparison, np.asarray(member_sets)),
    })


def _compare(members: np.ndarray, reference: np.ndarray, vocabulary: EmbeddedVocabulary, core: str | None,
             settings: SpuriousSettings) -> _Comparison:
    kind, k = "all", None
    if core is not None:
        k = vocabulary.class_index(core)
        matched = (reference @ vocabulary.class_text.T).argmax(1) == k
        if matched.sum() >= settings.min_reference:
            reference, kind = reference[matched], "matched"
    images = np.concatenate([members, reference])
    is_member = np.arange(len(images)) < len(members)
    weak = None
    if k is not None:
        core_probability = zero_shot_probabilities(images, vocabulary.class_text, vocabulary.logit_scale)[:, k]
        weak = core_probability < settings.weak_core_probability
    return _Comparison(images @ vocabulary.text.T, is_member, weak, kind)


def _reliance(comparison: _Comparison, masks: np.ndarray, min_weak: int) -> np.ndarray:
    """(P, T) reliance effect for P member masks; NaN where fewer than `min_weak` weak members."""
    out = np.full((len(masks), comparison.similarity.shape[1]), np.nan)
    for p, mask in enumerate(masks):
        weak = mask & comparison.weak
        if weak.sum() >= min_weak:
            median = np.median(comparison.similarity[~mask], axis=0)
            out[p] = 2 * (comparison.similarity[weak] > median).mean(0) - 1
    return out


def score_group(
    pool: pd.DataFrame,
    reference: pd.DataFrame,
    vocabulary: EmbeddedVocabulary,
    group: str,
    classes: Sequence[str],
    synonyms: dict[str, list[str]] | None = None,
    settings: SpuriousSettings = SpuriousSettings(),
) -> pd.DataFrame:
    """Score every concept for one group of pooled sets (see `preimage.concepts.pool.read_pool`).

    Adds the group, its core class and the evidence: paths of the members scoring highest on each concept.
    """
    members = invariant_members(pool)
    if members.empty:
        raise ValueError(f"group {group!r}: no accepted member of a non-counterfactual set to score")
    core = core_class(members)
    candidates = extrinsic_mask(vocabulary.concepts, classes, synonyms) if core is not None else [True] * len(vocabulary.concepts)
    member_embeddings, reference_embeddings = embedding_matrix(members), embedding_matrix(reference)
    table = score_concepts(member_embeddings, reference_embeddings, vocabulary, core, candidates,
                           members["set_id"].to_numpy(), settings)
    top = np.argsort(-(member_embeddings @ vocabulary.text.T), axis=0, kind="stable")[: settings.evidence]
    table.insert(0, "group", group)
    table.insert(1, "class", core)
    table["evidence"] = [members["path"].to_numpy()[top[:, t]].tolist() for t in range(len(table))]
    return table


def _set_consistency(comparison: _Comparison, member_sets: np.ndarray) -> np.ndarray:
    """(T,) share of sets whose members score higher than the reference on each concept."""
    if len(member_sets) != comparison.is_member.sum():
        raise ValueError(f"member_sets: expected one set name per member ({comparison.is_member.sum()}), got {len(member_sets)}")
    members = comparison.similarity[comparison.is_member]
    reference = comparison.similarity[~comparison.is_member]
    return np.mean([auroc(members[member_sets == s], reference) > 0.5 for s in np.unique(member_sets)], axis=0)
