"""Snakemake script: write the self-contained HTML report and the Markdown summary."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.report import write_report

with redirect_output(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    write_report(params.title, params.groups, inputs.summaries, inputs.spurious, params.clusters, params.figures,
                 snakemake.output.html, snakemake.output.markdown, inputs.evaluation, inputs.calls, params.directions,
                 inputs.effects[0] if inputs.effects else None)
