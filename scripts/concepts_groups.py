"""Snakemake script: which concept group each set joins, by the model's call on its source."""

from preimage.pipeline.steps.concepts import write_groups
from preimage.pipeline.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    write_groups(snakemake.params.config, snakemake.params.set_ids, snakemake.input.members,
                 snakemake.output.groups, snakemake.output.calls)
