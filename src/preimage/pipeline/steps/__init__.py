"""The pipeline's steps: what each Snakemake script runs, as functions of paths and settings a notebook can call."""
