"""2-D maps of a group's CLIP embeddings, laid out in the concept step and cached as Parquet so that drawing
the figures never runs t-SNE.

A map table has one row per point: role ("member", "reference" or "real"), set_id and image (the embedding
table's; a real image's id with a null set_id), cluster (the member's cluster in the pooled group
clustering, NO_CLUSTER for other roles) and x, y. The layout is t-SNE from scikit-learn (UMAP would need
umap-learn) on the unit-norm embeddings, or PCA for fewer points than t-SNE can place.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from preimage.analysis.concepts.embeddings import embedding_matrix, generated_members
from preimage.analysis.concepts.groups import GROUP_SCOPE

MIN_TSNE_POINTS = 12
# t-SNE iterations (scikit-learn's default is 1,000): on a world group's ~1,100 points, 500 end within 4 % of
# 1,000's KL divergence (0.76 vs 0.74) in half the time, and the map is a figure, read by eye
TSNE_ITERATIONS = 500
NO_CLUSTER = -1
MAP_COLUMNS = ["role", "set_id", "image", "cluster", "x", "y"]


def project_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) map of embeddings: t-SNE, or PCA below MIN_TSNE_POINTS points."""
    if len(embeddings) < MIN_TSNE_POINTS:
        components = min(2, len(embeddings), embeddings.shape[1])
        flat = PCA(n_components=components, random_state=seed).fit_transform(embeddings) if components else None
        return np.zeros((len(embeddings), 2)) if flat is None else np.pad(flat, ((0, 0), (0, 2 - flat.shape[1])))
    perplexity = min(30.0, (len(embeddings) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", max_iter=TSNE_ITERATIONS,
                random_state=seed).fit_transform(embeddings)


def _subsample(table: pd.DataFrame, points: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most `points` rows drawn at random, in table order (the map stays legible and t-SNE fast)."""
    return table.iloc[np.sort(rng.permutation(len(table))[:points])]


def group_map(pool: pd.DataFrame, assignments: pd.DataFrame, reference: pd.DataFrame, points: int = 1000,
              seed: int = 0, real: pd.DataFrame | None = None, core: str | None = None) -> pd.DataFrame:
    """The map table of one group: its generated members (`pool`, an embedding table) with their cluster
    in `assignments` (scope GROUP_SCOPE), the generated reference samples and, when `real` (an embedding
    table of real images, with `image_id` and `class_name`) and a `core` class are given, the real images of
    that class; at most `points` of each role, drawn with `seed`, which also seeds the layout."""
    labels = assignments.loc[assignments["scope"] == GROUP_SCOPE, ["set_id", "image", "cluster"]]
    members = generated_members(pool).merge(labels, on=["set_id", "image"], validate="1:1")
    rng = np.random.default_rng(seed)
    parts = [
        _subsample(members, points, rng).assign(role="member"),
        _subsample(generated_members(reference), points, rng).assign(role="reference", cluster=NO_CLUSTER),
    ]
    if real is not None and core is not None:
        rows = _subsample(real[real["class_name"] == core], points, rng)
        parts.append(rows.assign(role="real", set_id=None, image=rows["image_id"], cluster=NO_CLUSTER))
    table = pd.concat([part for part in parts if len(part)], ignore_index=True)
    table[["x", "y"]] = project_2d(embedding_matrix(table), seed)
    return table[MAP_COLUMNS].astype({"cluster": "int64"})
