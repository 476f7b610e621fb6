"""Snakemake script: place one source's sets, drawn by its set job, under results/sets/."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.set_links import link_sets

with redirect_output(snakemake.log[0]):
    for folder in link_sets(snakemake.input.sets, snakemake.output.summaries):
        print(folder)
