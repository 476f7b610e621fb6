"""Snakemake script: build every configured objective on the classifier, before any set is drawn."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.sets import check_objectives

with redirect_output(snakemake.log[0]):
    check_objectives(snakemake.params.config, snakemake.output[0])
