"""Snakemake script: write the self-contained HTML report and the Markdown summary."""

from preimage.report.build import build_report
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    groups = snakemake.params.groups
    build_report(snakemake.params.title, groups, snakemake.input.summaries, snakemake.input.spurious,
                 dict(zip(groups, snakemake.input.clusters)), snakemake.params.figures, snakemake.output.html,
                 snakemake.output.markdown, tuple(snakemake.input.evaluation) or None)
