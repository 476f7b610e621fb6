"""Snakemake script: concept interventions, the top candidate concepts edited into and out of reference images."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import intervene_on_concepts

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    intervene_on_concepts(snakemake.input.scores, snakemake.input.vocabulary, snakemake.input.reference,
                          params.config, params.settings, snakemake.output.table, snakemake.output.images,
                          snakemake.threads)
