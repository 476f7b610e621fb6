"""Snakemake script: record the selected source images."""

from preimage.pipeline.steps.sets import write_sources
from preimage.pipeline.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    write_sources(snakemake.params.config, snakemake.output[0])
