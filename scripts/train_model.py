"""Snakemake script: train one of the world's supervised models (classifier, oracle or CLIP)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.training import train_world_model

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    train_world_model(snakemake.rule.removeprefix("train_"), params.world, params.training, params.device,
                      snakemake.output.metrics, snakemake.threads)
