"""Snakemake script: embed the concept vocabulary and one prompt per class of the explained classifier."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import embed_vocabulary

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    embed_vocabulary(params.vocabulary, params.prompt_template, params.class_template, params.shapes,
                     params.config, params.device, snakemake.output.table, snakemake.output.text, snakemake.threads)
