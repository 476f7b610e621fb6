"""Snakemake script: which concept group each set joins, by the model's call on its source."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import write_groups

with redirect_output(snakemake.log[0]):
    write_groups(snakemake.params.config, snakemake.params.set_ids, snakemake.input.members,
                 snakemake.output.groups, snakemake.output.calls)
