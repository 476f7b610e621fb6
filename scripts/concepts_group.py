"""Snakemake script: cluster one group's sets (pooled and one by one), name the clusters, rank the
vocabulary's concepts by how much the group's decision depends on them, and lay out its embedding map."""

import pandas as pd

from preimage.concepts.clustering import ClusterSettings, cluster_pool
from preimage.concepts.embeddings import EmbeddedVocabulary
from preimage.concepts.layout import settings_from_config
from preimage.concepts.maps import group_map
from preimage.concepts.spurious import SpuriousSettings, score_group
from preimage.io import write_parquet
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    vocabulary = EmbeddedVocabulary.from_table(pd.read_parquet(snakemake.input.vocabulary))
    pool, reference = pd.read_parquet(snakemake.input.embeddings), pd.read_parquet(snakemake.input.reference)
    real = pd.read_parquet(snakemake.input.real) if "real" in snakemake.input.keys() else None
    clustering = settings_from_config(ClusterSettings, params.clusters, "concepts.clusters")
    scoring = settings_from_config(SpuriousSettings, params.spurious, "concepts.spurious")
    assignments, clusters = cluster_pool(pool, vocabulary.text, vocabulary.concepts, vocabulary.logit_scale, clustering)
    predictions = pd.read_parquet(snakemake.input.reference_predictions)
    scores = score_group(pool, reference, vocabulary, params.group, params.synonyms, scoring, predictions)
    embedding_map = group_map(pool, assignments, reference, params.map_points, clustering.seed, real, params.group.core)
    write_parquet(assignments, snakemake.output.assignments)
    write_parquet(clusters, snakemake.output.clusters)
    write_parquet(scores, snakemake.output.spurious)
    write_parquet(embedding_map, snakemake.output.map)
    print(clusters[["scope", "cluster", "size", "k", "name"]].to_string())
    print(scores.sort_values("rank").drop(columns="evidence").head(10).to_string())
