"""Snakemake script: the data-only baseline, from real test images the classifier gets wrong and right."""

import pandas as pd

from preimage.concepts.baseline import baseline_scores
from preimage.concepts.embeddings import EmbeddedVocabulary, embedding_matrix
from preimage.concepts.layout import settings_from_config
from preimage.concepts.spurious import SpuriousSettings
from preimage.io import write_parquet
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    vocabulary = EmbeddedVocabulary.from_table(pd.read_parquet(snakemake.input.vocabulary))
    images = pd.read_parquet(snakemake.input.embeddings).merge(
        pd.read_parquet(snakemake.input.predictions)[["image_id", "prediction"]], on="image_id", validate="1:1")
    table = baseline_scores(embedding_matrix(images), images["class_name"], images["prediction"], images["image_id"],
                            vocabulary, snakemake.params.classes, snakemake.params.synonyms,
                            settings_from_config(SpuriousSettings, snakemake.params.settings, "concepts.spurious"))
    write_parquet(table, snakemake.output[0])
    print(table[table["flagged"]].drop(columns="evidence").to_string())
