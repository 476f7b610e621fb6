"""Snakemake script: every figure of the run (PNG + PDF) in one process."""

from preimage.report.build import FigureSettings, write_figures
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    groups = params.groups
    write_figures(groups, dict(zip(groups, inputs.scores)), dict(zip(groups, inputs.clusters)),
                  dict(zip(groups, inputs.maps)), params.set_dirs, inputs.summaries, params.figures,
                  FigureSettings.from_config(params.settings), inputs.get("evaluation"))
