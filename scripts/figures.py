"""Snakemake script: the run's figures (samplers, guidance, evaluation) from the set summaries."""

from preimage.report.build import write_run_figures
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    write_run_figures(snakemake.input.summaries, snakemake.params.figures, snakemake.input.get("evaluation"))
