"""Snakemake script: one group's figures (PNG + PDF): enrichment bars, cluster montage, embedding map and
a grid of every set."""

from preimage.report.build import GROUP_FIGURES, FigureSettings, write_group_figures
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    out, params = snakemake.output, snakemake.params
    write_group_figures(
        snakemake.input.scores, snakemake.input.clusters, snakemake.input.assignments, snakemake.input.embeddings,
        snakemake.input.reference, params.set_dirs, params.group,
        {name: out[name] for name in GROUP_FIGURES}, out.sets,
        FigureSettings.from_config(params.settings), snakemake.input.get("real"),
    )
