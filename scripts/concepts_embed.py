"""Snakemake script: CLIP embeddings of the accepted members and sources of a group's sets (or of the reference)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import embed_sets

with redirect_output(snakemake.log[0]):
    params = snakemake.params
    embed_sets(params.set_dirs, snakemake.output[0], params.config, params.device, params.batch_size,
               snakemake.threads)
