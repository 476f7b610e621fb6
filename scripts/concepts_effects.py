"""Snakemake script: each tested concept's effect with its interval, and the findings they support."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import estimate_effects

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    estimate_effects(snakemake.input[0], params.settings, params.regression, snakemake.output[0])
