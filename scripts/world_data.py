"""Snakemake script: write one split of the shortcut world."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.world import write_world_split

with redirect_output(snakemake.log[0]):
    output = snakemake.output
    write_world_split(snakemake.params.world, snakemake.wildcards.split, output.table, output.images, output.preview)
