"""Snakemake script: the run's figures (samplers, guidance, evaluation) from the set summaries."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.report import draw_run_figures

with redirect_output(snakemake.log[0]):
    output = snakemake.output
    draw_run_figures(snakemake.input.summaries, snakemake.params.stems, output.latex, output.markdown,
                     snakemake.input.get("evaluation"))
