"""Snakemake script: write the world's planted shortcuts (read by evaluation rules only)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.world import write_ground_truth

with redirect_output(snakemake.log[0]):
    write_ground_truth(snakemake.params.world, snakemake.output[0])
