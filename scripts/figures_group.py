"""Snakemake script: one concept group's figures and the grids of its sets."""

from preimage.report.build import GROUP_FIGURES, FigureSettings, write_group_figures
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    write_group_figures(inputs.scores, inputs.clusters, inputs.map, params.set_dirs, params.group,
                        {name: output[name] for name in GROUP_FIGURES}, output.sets,
                        FigureSettings.from_config(params.settings))
