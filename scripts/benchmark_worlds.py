"""Snakemake script: the many-world benchmark for one seed (runs the pipeline on each drawn world)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.benchmarks import benchmark_worlds

with redirect_output(snakemake.log[0]):
    output = snakemake.output
    benchmark_worlds(snakemake.config, int(snakemake.wildcards.seed), snakemake.params.snakefile, snakemake.threads,
                     output.table, output.markdown, snakemake.params.figure)
