"""Snakemake script: train the world's diffusion prior."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import train_world_prior

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    train_world_prior(params.world, params.training, params.device, snakemake.output.metrics, snakemake.threads)
