"""Snakemake script: score each method's flags against the world's planted shortcuts (evaluation only)."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.report import evaluate_flags

with redirect_output(snakemake.log[0]):
    evaluate_flags(snakemake.input.spurious, snakemake.input.ground_truth, snakemake.input.get("baseline"),
                   snakemake.input.get("effects"), snakemake.output.summary, snakemake.output.pairs,
                   snakemake.input.get("classifier_metrics"), snakemake.input.get("regressor_metrics"),
                   snakemake.params.min_drop)
