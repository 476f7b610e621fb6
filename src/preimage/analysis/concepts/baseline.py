"""A data-only baseline in the spirit of Bias-to-Text (Kim et al., 2024): find a model's spurious
concepts from its mistakes on real labelled images, without generating anything.

For each predicted class c, the concepts are ranked by how much higher their CLIP similarity is on the
images wrongly predicted as c than on the images rightly predicted as c (as the rank effect
2 * AUROC - 1, so scores and thresholds read like the invariant-set scorer's). Grouping by predicted
class asks "what makes the model say c when it is not c", which names the class a shortcut belongs to;
grouping by true class would blame the classes whose images carry another class's shortcut. Flags use
the same rule as the invariant-set scorer: a permutation null over the wrong/right labels and a
minimum effect. The baseline only sees what the test data happens to break; it needs such data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
from preimage.analysis.concepts.spurious import SpuriousSettings
from preimage.analysis.concepts.statistics import (
    auroc_from_ranks,
    flag,
    null_threshold,
    permuted_masks,
    pooled_ranks,
    rank_candidates,
)
from preimage.analysis.concepts.vocabulary import extrinsic_mask

MIN_IMAGES = 2


def baseline_scores(
    embeddings: np.ndarray,
    labels: Sequence[str],
    predictions: Sequence[str],
    image_ids: Sequence[str],
    vocabulary: EmbeddedVocabulary,
    classes: Sequence[str],
    synonyms: Mapping[str, Sequence[str]] | None = None,
    settings: SpuriousSettings = SpuriousSettings(),
) -> pd.DataFrame:
    """One row per (predicted class in `classes`, concept), with the columns of the invariant-set scorer.

    `embeddings` are (N, D) unit-norm CLIP embeddings of real images with true `labels` and the model's
    `predictions` (class names). A class with fewer than two wrong or two right predictions gets NaN
    scores and no flag. Concepts naming a class are not candidates, as for the invariant-set scorer.
    """
    labels, predictions, image_ids = np.asarray(labels), np.asarray(predictions), np.asarray(image_ids)
    if not len(embeddings) == len(labels) == len(predictions) == len(image_ids):
        raise ValueError(f"embeddings, labels, predictions and image_ids must have one row per image, got "
                         f"{len(embeddings)}, {len(labels)}, {len(predictions)}, {len(image_ids)}")
    candidates = np.asarray(extrinsic_mask(vocabulary.concepts, vocabulary.class_names(synonyms)))
    similarity = embeddings @ vocabulary.text.T
    tables = [_score_class(similarity[predictions == c], (labels != c)[predictions == c],
                           image_ids[predictions == c], c, vocabulary, candidates, settings) for c in classes]
    return pd.concat(tables, ignore_index=True)


def _score_class(similarity: np.ndarray, wrong: np.ndarray, image_ids: np.ndarray, cls: str,
                 vocabulary: EmbeddedVocabulary, candidates: np.ndarray, settings: SpuriousSettings) -> pd.DataFrame:
    nan = np.full(len(vocabulary.concepts), np.nan)
    score, threshold, evidence = nan, float("nan"), [[] for _ in vocabulary.concepts]
    if wrong.sum() >= MIN_IMAGES and (~wrong).sum() >= MIN_IMAGES:
        ranks = pooled_ranks(similarity)

        def statistic(masks: np.ndarray) -> np.ndarray:
            return 2 * auroc_from_ranks(ranks, masks) - 1

        score = statistic(wrong[None])[0]
        shuffled = permuted_masks(wrong, np.zeros(len(wrong), dtype=int), settings.permutations,
                                  np.random.default_rng(settings.seed))
        threshold = null_threshold(statistic(shuffled), candidates, settings.alpha)
        top = np.argsort(-similarity[wrong], axis=0, kind="stable")[: settings.evidence]
        evidence = [image_ids[wrong][top[:, t]].tolist() for t in range(len(vocabulary.concepts))]
    return pd.DataFrame({
        "group": cls,
        "kind": "class",
        "class": cls,
        "concept": vocabulary.concepts,
        "extrinsic": candidates,
        "enrichment": score,
        "score": np.where(candidates, score, np.nan),
        "rank": rank_candidates(score, candidates),
        "null_threshold": threshold,
        "threshold": max(threshold, settings.min_effect) if np.isfinite(threshold) else np.nan,
        "flagged": flag(score, candidates, threshold, settings.min_effect),
        "members": int(wrong.sum()),
        "reference": int((~wrong).sum()),
        "evidence": evidence,
    })
