"""Snakemake script: sampler comparison (figure, LaTeX, Markdown) and the guidance-scale figure."""

from preimage.report.build import read_summaries, write_sampler_outputs
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    out = snakemake.output
    summaries = read_summaries(snakemake.input.summaries)
    write_sampler_outputs(summaries, out.samplers, out.latex, out.markdown, out.guidance)
