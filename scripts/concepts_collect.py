"""Snakemake script: stack per-group Parquet tables into one."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import stack_tables

with redirect_output(snakemake.log[0]):
    stack_tables(list(snakemake.input), snakemake.output[0])
