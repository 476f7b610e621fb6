"""Snakemake script: a global direction's figures (before/after grid, flip rate per source class)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.report import draw_direction_figures

with redirect_output(snakemake.log[0]):
    inputs = snakemake.input
    draw_direction_figures(snakemake.wildcards.target, inputs.heldout, inputs.summary, inputs.originals,
                           inputs.edited, snakemake.params.stems)
