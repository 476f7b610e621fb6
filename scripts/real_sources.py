"""Snakemake script: the run's own labelled real images (sets.sources' folder or manifest) as a table and
uint8 pixels, for the concept step's baseline and embedding maps."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.sources import write_real_sources

with redirect_output(snakemake.log[0]):
    write_real_sources(snakemake.params.config, snakemake.output.table, snakemake.output.images)
