"""Snakemake script: generate every sampler's invariant set for one (source image, objective)."""

from preimage.pipeline.steps.sets import generate_invariant_sets
from preimage.pipeline.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    generate_invariant_sets(snakemake.wildcards.job, snakemake.input.sources, snakemake.output.summaries,
                            snakemake.params.config, snakemake.threads)
