"""Snakemake script: score both methods' flags against the world's planted shortcuts (evaluation only)."""

import pandas as pd

from preimage.io import write_parquet
from preimage.report.evaluation import evaluate, winner
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    methods = {"invariant sets": pd.read_parquet(snakemake.input.spurious)}
    if "baseline" in snakemake.input.keys():
        methods["baseline (misclassified real images)"] = pd.read_parquet(snakemake.input.baseline)
    summary, pairs = evaluate(methods, pd.read_parquet(snakemake.input.ground_truth))
    write_parquet(summary, snakemake.output.summary)
    write_parquet(pairs, snakemake.output.pairs)
    print(summary.to_string(), f"\nwinner: {winner(summary)}")
