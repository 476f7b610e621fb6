"""What a global counterfactual direction changes, according to CLIP: the vocabulary's concepts whose similarity to
the images rises most from before the edit to after it, and how often CLIP names each class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from preimage.analysis.concepts.clustering import zero_shot_probabilities
from preimage.analysis.concepts.embeddings import EmbeddedVocabulary


def concept_shift(before: np.ndarray, after: np.ndarray, vocabulary: EmbeddedVocabulary) -> pd.DataFrame:
    """Per vocabulary concept, from the CLIP embeddings of the same images `before` and `after` an edit (N, D, in
    the same order): the mean cosine similarity before and after, their difference (`change`) and the share of
    images whose similarity rises; sorted by change, largest first, with its `rank` (1 = rises most)."""
    if before.shape != after.shape:
        raise ValueError(f"before and after must be the same images, got shapes {before.shape} and {after.shape}")
    similarity_before, similarity_after = _unit(before) @ vocabulary.text.T, _unit(after) @ vocabulary.text.T
    table = pd.DataFrame({
        "concept": list(vocabulary.concepts),
        "before": similarity_before.mean(0),
        "after": similarity_after.mean(0),
        "change": (similarity_after - similarity_before).mean(0),
        "rising": (similarity_after > similarity_before).mean(0),
    }).sort_values("change", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def zero_shot_classes(embeddings: np.ndarray, vocabulary: EmbeddedVocabulary) -> np.ndarray:
    """The class CLIP names for each image (zero-shot over the vocabulary's class prompts)."""
    if not vocabulary.classes:
        raise ValueError("the vocabulary has no class prompts to name classes with")
    probabilities = zero_shot_probabilities(_unit(embeddings), vocabulary.class_text, vocabulary.logit_scale)
    return np.asarray(vocabulary.classes)[probabilities.argmax(1)]


def _unit(embeddings: np.ndarray) -> np.ndarray:
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(min=1e-12)
