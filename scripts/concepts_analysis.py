"""Snakemake script: every concept group's clusters, concept scores and map (on the job's threads, as worker
processes), then every group's scores in one table with mirror images of other classes' findings marked."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import analyse_groups

with redirect_output(snakemake.log[0]):
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    analyse_groups(inputs.vocabulary, inputs.embeddings, inputs.reference, inputs.reference_predictions,
                   inputs.get("real"), params.groups, params.objectives, params.synonyms, params.clusters,
                   params.spurious, params.map_points,
                   {name: output[name] for name in ("clusters", "scores", "maps")}, output.table, snakemake.threads)
