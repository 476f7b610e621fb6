"""Snakemake script: the explained classifier's predictions on a real-image split, for the data-only baseline."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import predict_real_images

with redirect_output(snakemake.log[0]):
    predict_real_images(snakemake.input.table, snakemake.input.images, snakemake.output[0],
                        snakemake.params.config, snakemake.params.device, snakemake.threads)
