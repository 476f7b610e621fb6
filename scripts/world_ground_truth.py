"""Snakemake script: write the world's planted shortcuts (read by evaluation rules only)."""

from preimage.io import write_parquet
from preimage.workflow import redirect_output
from preimage.world.generator import WorldSpec, ground_truth

with redirect_output(snakemake.log[0]):
    write_parquet(ground_truth(WorldSpec.from_config(snakemake.params.world)), snakemake.output[0])
