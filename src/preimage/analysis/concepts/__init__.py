"""Concepts in invariant sets: CLIP embeddings, clusters named by a vocabulary, 2-D embedding maps,
spurious-feature scores and a data-only baseline. Explanation code here never reads the world's ground truth."""

import lazy_loader

# Submodules load on first use: see preimage/__init__.py.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "baseline": ["baseline_scores"],
        "clustering": ["ClusterSettings", "Clustering", "choose_clusters", "cluster_pool", "name_clusters"],
        "embeddings": ["EmbeddedVocabulary", "embed_array", "embed_directories", "embed_images", "embedding_matrix",
                       "load_or_embed", "sets_rows", "vocabulary_table"],
        "groups": ["Group", "concept_groups"],
        "maps": ["group_map", "project_2d"],
        "spurious": ["SpuriousSettings", "score_concepts", "score_group"],
        "vocabulary": ["Concept", "load_vocabulary", "parse_vocabulary"],
    },
)
