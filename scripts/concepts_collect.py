"""Snakemake script: stack per-group Parquet tables into one."""

import pandas as pd

from preimage.io import write_parquet
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    write_parquet(pd.concat([pd.read_parquet(p) for p in snakemake.input], ignore_index=True), snakemake.output[0])
