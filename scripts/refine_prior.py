"""Snakemake script: fine-tune the world's trained diffusion prior on offset noise (its second stage)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import refine_world_prior

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    refine_world_prior(snakemake.input[0], params.world, params.training, params.device, snakemake.output.metrics,
                       snakemake.threads)
