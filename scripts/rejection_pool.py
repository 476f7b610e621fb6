"""Snakemake script: draw the shared pool of pure-noise prior draws that rejection sets test."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.sets import draw_rejection_pool

with redirect_output(snakemake.log[0]):
    draw_rejection_pool(snakemake.input.sources, snakemake.output.members, snakemake.params.config, snakemake.threads)
