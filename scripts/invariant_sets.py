"""Snakemake script: generate every objective's and sampler's invariant set for the sources of one set job."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.sets import generate_invariant_sets

with redirect_output(snakemake.log[0]):
    generate_invariant_sets(snakemake.params.sources, snakemake.input.sources, snakemake.output.sets,
                            snakemake.params.config, snakemake.threads, snakemake.input.get("pool"))
