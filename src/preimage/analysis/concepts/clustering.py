"""Cluster an invariant set's CLIP embeddings into modes and name each mode with vocabulary concepts.

k is chosen by the silhouette of k-means over k = 2..k_max, with at most one cluster per `min_size`
members (a mode needs several members to be one). A silhouette below `min_silhouette` means the set has
no clear modes (one blob splits into pieces with silhouettes around 0.1 in CLIP-sized spaces), so the set
is reported as one cluster rather than as arbitrary slices of a continuum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from preimage.analysis.concepts.embeddings import embedding_matrix, generated_members
from preimage.analysis.concepts.groups import GROUP_SCOPE

MIN_SILHOUETTE = 0.15
MIN_SIZE = 5


@dataclass(frozen=True)
class Clustering:
    """Cluster labels of N embeddings with the evidence for the chosen k."""

    labels: np.ndarray
    """(N,) int cluster per row, 0..k-1, clusters numbered by decreasing size."""
    k: int
    silhouette: float
    """Silhouette of the chosen k; NaN when k = 1."""
    silhouettes: dict[int, float]
    """Silhouette of every k tried."""


def choose_clusters(
    embeddings: np.ndarray,
    k_max: int = 8,
    min_silhouette: float = MIN_SILHOUETTE,
    min_size: int = MIN_SIZE,
    seed: int = 0,
    silhouette_sample: int = 2000,
) -> Clustering:
    """k-means with the k of best silhouette, or a single cluster when no k reaches `min_silhouette`."""
    if embeddings.ndim != 2 or len(embeddings) == 0:
        raise ValueError(f"embeddings: expected a non-empty (N, D) array, got shape {embeddings.shape}")
    if k_max < 1 or min_size < 1:
        raise ValueError(f"k_max and min_size must be >= 1, got {k_max!r} and {min_size!r}")
    silhouettes: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    distinct = len(np.unique(embeddings.round(6), axis=0))
    for k in range(2, min(k_max, distinct - 1, len(embeddings) - 1, len(embeddings) // min_size) + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings)
        sample = min(silhouette_sample, len(embeddings))
        silhouettes[k] = float(silhouette_score(embeddings, labels, sample_size=sample, random_state=seed))
        fits[k] = labels
    best = max(silhouettes, key=silhouettes.get, default=1)
    if best == 1 or silhouettes[best] < min_silhouette:
        return Clustering(np.zeros(len(embeddings), dtype=int), 1, float("nan"), silhouettes)
    return Clustering(_by_size(fits[best]), best, silhouettes[best], silhouettes)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters so that 0 is the largest (ties by first appearance)."""
    values, counts = np.unique(labels, return_counts=True)
    order = values[np.argsort(-counts, kind="stable")]
    return np.argsort(order)[labels]


def representatives(embeddings: np.ndarray, labels: np.ndarray, count: int) -> dict[int, np.ndarray]:
    """Per cluster, the row indices of its `count` most central members, medoid first.

    With unit-norm embeddings the summed cosine similarity of a member to its cluster is its dot product
    with the cluster's summed vector, so the medoid is found without a pairwise matrix.
    """
    chosen: dict[int, np.ndarray] = {}
    for cluster in np.unique(labels):
        rows = np.flatnonzero(labels == cluster)
        centrality = embeddings[rows] @ embeddings[rows].sum(0)
        chosen[int(cluster)] = rows[np.argsort(-centrality, kind="stable")[:count]]
    return chosen


def zero_shot_probabilities(embeddings: np.ndarray, text: np.ndarray, logit_scale: float) -> np.ndarray:
    """(N, T) CLIP zero-shot probabilities of each text for each image (softmax over the texts)."""
    return softmax(logit_scale * embeddings @ text.T, axis=1)


def name_clusters(
    embeddings: np.ndarray,
    labels: np.ndarray,
    text: np.ndarray,
    concepts: Sequence[str],
    logit_scale: float,
    top: int = 3,
) -> pd.DataFrame:
    """Name each cluster by the concepts that set it apart: one row per (cluster, rank).

    `score` is the cluster's mean zero-shot probability of the concept; `lift` the standardised
    difference of its mean CLIP similarity from the whole pool's. With several clusters the name is the
    concept of highest lift (what distinguishes this mode from its siblings); a single cluster has no
    siblings, so it is named by its most probable concepts.
    """
    similarity = embeddings @ text.T
    probability = zero_shot_probabilities(embeddings, text, logit_scale)
    spread = similarity.std(0) + 1e-8
    several = len(np.unique(labels)) > 1
    rows = []
    for cluster in np.unique(labels):
        inside = labels == cluster
        score = probability[inside].mean(0)
        lift = (similarity[inside].mean(0) - similarity.mean(0)) / spread
        order = np.argsort(-(lift if several else score), kind="stable")[:top]
        for rank, index in enumerate(order, start=1):
            rows.append({"cluster": int(cluster), "rank": rank, "concept": concepts[index],
                         "score": float(score[index]), "lift": float(lift[index])})
    return pd.DataFrame(rows, columns=["cluster", "rank", "concept", "score", "lift"])


@dataclass(frozen=True)
class ClusterSettings:
    """Knobs of the clustering; config concepts.clusters maps onto these fields."""

    k_max: int = 8
    min_silhouette: float = MIN_SILHOUETTE
    min_size: int = MIN_SIZE
    representatives: int = 8
    name_terms: int = 3
    seed: int = 0


def cluster_pool(pool: pd.DataFrame, text: np.ndarray, concepts: Sequence[str], logit_scale: float,
                 settings: ClusterSettings = ClusterSettings()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster a pool of generated members as a whole (scope "group") and set by set (scope = set id).

    Returns (assignments: one row per member and scope with its cluster; clusters: one row per cluster
    with size, k, silhouette, name, top concepts with scores and lifts, and representative paths).
    """
    members = generated_members(pool)
    if members.empty:
        sets = sorted(set(pool["set_id"])) if "set_id" in pool else []
        raise ValueError(f"no accepted member in any set of this group ({len(sets)} sets: {', '.join(sets[:4])}"
                         f"{', ...' if len(sets) > 4 else ''}), so there is nothing to cluster: the objective's "
                         "tolerance or the sampler's settings let no member pass; loosen them or drop the objective")
    per_set = [(s, rows.reset_index(drop=True)) for s, rows in members.groupby("set_id", sort=True)]
    scopes = [(GROUP_SCOPE, members), *per_set]
    assignments, clusters = [], []
    for scope, rows in scopes:
        embeddings = embedding_matrix(rows)
        found = choose_clusters(embeddings, settings.k_max, settings.min_silhouette, settings.min_size, settings.seed)
        names = name_clusters(embeddings, found.labels, text, concepts, logit_scale, settings.name_terms)
        central = representatives(embeddings, found.labels, settings.representatives)
        assignments.append(rows[["set_id", "image", "path"]].assign(scope=scope, cluster=found.labels))
        for cluster, named in names.groupby("cluster", sort=True):
            clusters.append({
                "scope": scope, "cluster": int(cluster), "size": int((found.labels == cluster).sum()), "k": found.k,
                "silhouette": found.silhouette, "name": named["concept"].iloc[0],
                "concepts": named["concept"].tolist(), "scores": named["score"].tolist(),
                "lifts": named["lift"].tolist(),
                "representatives": rows["path"].to_numpy()[central[int(cluster)]].tolist(),
            })
    columns = ["scope", "set_id", "image", "path", "cluster"]
    return pd.concat(assignments, ignore_index=True)[columns], pd.DataFrame(clusters)
