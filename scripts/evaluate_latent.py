"""Snakemake script: score the latent world model's samples with the oracle and save a grid of them."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import evaluate_world_latent

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    evaluate_world_latent(snakemake.input.latent, snakemake.input.oracle, params.world, params.evaluation,
                          params.device, snakemake.output.metrics, snakemake.output.samples, snakemake.threads)
