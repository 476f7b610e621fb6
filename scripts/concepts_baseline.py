"""Snakemake script: the data-only baseline, from real test images the classifier gets wrong and right."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import score_baseline

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    score_baseline(snakemake.input.vocabulary, snakemake.input.embeddings, snakemake.input.predictions,
                   snakemake.input.groups, params.synonyms, params.settings, snakemake.output[0])
