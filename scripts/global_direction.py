"""Snakemake script: find the global counterfactual direction towards one target class and measure it."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.directions import find_global_direction

with redirect_output(snakemake.log[0]):
    find_global_direction(snakemake.wildcards.target, snakemake.input.table, snakemake.input.images,
                          snakemake.input.vocabulary, snakemake.params.config, snakemake.output, snakemake.threads)
