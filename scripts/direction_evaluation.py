"""Snakemake script: what a global direction changes according to the world's oracle (evaluation only)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.directions import evaluate_direction

with redirect_output(snakemake.log[0]):
    evaluate_direction(snakemake.input.reconstructed, snakemake.input.edited, snakemake.params.config,
                       snakemake.output[0], snakemake.threads)
