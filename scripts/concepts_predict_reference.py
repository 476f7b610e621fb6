"""Snakemake script: the explained classifier's predicted class and each regressor's output for every reference
image, which the spurious-feature scorer's decision effects and call rates compare within the reference."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import predict_reference

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    predict_reference(snakemake.input.members, snakemake.output[0], params.config, params.device,
                      params.batch_size, snakemake.threads, params.regressors)
