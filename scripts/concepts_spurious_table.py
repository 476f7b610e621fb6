"""Snakemake script: every group's concept scores in one table, mirror images of other classes' findings marked."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import collect_spurious

with redirect_output(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    collect_spurious(inputs.tables, inputs.embeddings, params.groups, inputs.vocabulary, inputs.reference,
                     inputs.reference_predictions, params.synonyms, params.spurious, snakemake.output[0])
