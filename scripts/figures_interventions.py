"""Snakemake script: the concept interventions' effect intervals and edited pairs."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.report import draw_intervention_figures

with redirect_output(snakemake.log[0]):
    draw_intervention_figures(snakemake.input.effects, snakemake.input.edits, snakemake.input.images,
                              snakemake.params.stems, snakemake.params.min_effect)
