"""Snakemake script: train the world's latent diffusion model (VAE, text-conditioned UNet, text encoder)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import train_world_latent

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    train_world_latent(params.world, params.training, params.device, snakemake.output.metrics, snakemake.threads)
