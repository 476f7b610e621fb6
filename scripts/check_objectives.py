"""Snakemake script: build every configured objective on the classifier once, before any set job starts."""

from preimage.pipeline.steps.sets import check_objectives
from preimage.pipeline.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    check_objectives(snakemake.params.config, snakemake.output[0])
