"""Snakemake script: cluster one group's sets (pooled and one by one), name the clusters, rank the
vocabulary's concepts by how much the group's decision depends on them (a regression counterfactual's group
confirmed on the regressor's outputs on the reference), and lay out its embedding map."""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.concepts import analyse_group

with redirect_output(snakemake.log[0]):
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    analyse_group(inputs.vocabulary, inputs.embeddings, inputs.reference, inputs.reference_predictions,
                  inputs.get("real"), params.group, params.synonyms, params.clusters, params.spurious,
                  params.map_points, output.assignments, output.clusters, output.spurious, output.map,
                  contrast=params.contrast, regressor=params.regressor)
