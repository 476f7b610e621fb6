"""Snakemake script: train the latent world model's UNet and text encoder further (its second stage)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import refine_world_latent

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    refine_world_latent(snakemake.input[0], params.world, params.training, params.device, snakemake.output.metrics,
                        snakemake.threads)
