"""Snakemake script: record the selected source images."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.sources import write_sources

with redirect_output(snakemake.log[0]):
    write_sources(snakemake.params.config, snakemake.output[0])
