"""Concepts in invariant sets: CLIP embeddings, clusters named by a vocabulary, 2-D embedding maps,
spurious-feature scores and a data-only baseline. Explanation code here never reads the world's ground truth."""

from preimage.concepts.baseline import baseline_scores
from preimage.concepts.clustering import ClusterSettings, Clustering, choose_clusters, cluster_pool, name_clusters
from preimage.concepts.embeddings import (
    EmbeddedVocabulary,
    embed_array,
    embed_directories,
    embed_images,
    embedding_matrix,
    load_or_embed,
    vocabulary_table,
)
from preimage.concepts.layout import Group, concept_groups
from preimage.concepts.maps import group_map, project_2d
from preimage.concepts.spurious import SpuriousSettings, score_concepts, score_group
from preimage.concepts.vocabulary import Concept, load_vocabulary, world_concept, world_vocabulary

__all__ = [
    "ClusterSettings", "Clustering", "Concept", "EmbeddedVocabulary", "Group", "SpuriousSettings", "baseline_scores",
    "choose_clusters", "cluster_pool", "concept_groups", "embed_array", "embed_directories", "embed_images",
    "embedding_matrix", "group_map", "load_or_embed", "load_vocabulary", "name_clusters", "project_2d",
    "score_concepts", "score_group", "vocabulary_table", "world_concept", "world_vocabulary",
]
