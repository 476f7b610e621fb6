"""Snakemake script: score prior samples with the oracle and save a grid of them."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import evaluate_world_prior

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    evaluate_world_prior(snakemake.input.prior, snakemake.input.oracle, params.world,
                         params.evaluation["prior_samples"], params.evaluation["prior_sampling_steps"],
                         params.device, snakemake.output.metrics, snakemake.output.samples, snakemake.threads)
