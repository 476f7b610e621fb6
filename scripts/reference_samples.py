"""Snakemake script: draw the unconstrained reference sample of the prior.

With a class-templated prompt (latent priors), the one prior is re-prompted for each class of the sources
(see `reference_set`).
"""

from preimage.pipeline.logs import redirect_output
from preimage.pipeline.steps.sets import draw_reference_samples

with redirect_output(snakemake.log[0]):
    draw_reference_samples(snakemake.input.sources, snakemake.output.members, snakemake.params.config,
                           snakemake.threads)
