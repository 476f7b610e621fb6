"""The engine: objectives, diffusion priors, samplers and invariant sets, and the model loaders they use.

It imports only `preimage.utils`; it knows nothing of the shortcut world, the concept step or Snakemake.
"""
