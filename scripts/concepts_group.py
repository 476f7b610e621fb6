"""Snakemake script: cluster one group's sets (pooled and one by one), name the clusters, and rank the
vocabulary's concepts by how much the group's decision depends on them."""

import pandas as pd

from preimage.concepts.clustering import ClusterSettings, cluster_pool
from preimage.concepts.embeddings import EmbeddedVocabulary
from preimage.concepts.layout import settings_from_config
from preimage.concepts.spurious import SpuriousSettings, score_group
from preimage.io import write_parquet
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    vocabulary = EmbeddedVocabulary.from_table(pd.read_parquet(snakemake.input.vocabulary))
    pool = pd.read_parquet(snakemake.input.embeddings)
    clustering = settings_from_config(ClusterSettings, params.clusters, "concepts.clusters")
    scoring = settings_from_config(SpuriousSettings, params.spurious, "concepts.spurious")
    assignments, clusters = cluster_pool(pool, vocabulary.text, vocabulary.concepts, vocabulary.logit_scale, clustering)
    scores = score_group(pool, pd.read_parquet(snakemake.input.reference), vocabulary, params.group, params.synonyms,
                         scoring)
    write_parquet(assignments, snakemake.output.assignments)
    write_parquet(clusters, snakemake.output.clusters)
    write_parquet(scores, snakemake.output.spurious)
    print(clusters[["scope", "cluster", "size", "k", "name"]].to_string())
    print(scores.sort_values("rank").drop(columns="evidence").head(10).to_string())
