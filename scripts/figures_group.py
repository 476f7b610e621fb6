"""Snakemake script: one concept group's figures and the grids of its sets."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.report import draw_group_figures

with redirect_output(snakemake.log[0]):
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    tables = params.tables
    draw_group_figures(inputs.scores, tables["clusters"], tables["map"], params.set_dirs, params.group, output,
                       output.sets, params.settings)
