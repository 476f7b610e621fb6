"""Snakemake script: record the selected source images."""

from preimage.io import write_parquet
from preimage.workflow import redirect_output, select_sources

with redirect_output(snakemake.log[0]):
    write_parquet(select_sources(snakemake.params.config), snakemake.output[0])
