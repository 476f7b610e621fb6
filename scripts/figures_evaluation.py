"""Snakemake script: bar chart of both methods' scores against the planted shortcuts."""

from preimage.report.build import write_evaluation_figure
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    write_evaluation_figure(snakemake.input[0], snakemake.output.png)
