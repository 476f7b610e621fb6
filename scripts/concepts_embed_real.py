"""Snakemake script: CLIP embeddings of every real image of a split (a world split or the run's sources), with
its `class_name`."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import embed_real_images

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    embed_real_images(snakemake.input.table, snakemake.input.images, snakemake.output[0], params.config,
                      params.device, params.batch_size, snakemake.threads)
