"""The pipeline glue: the config and its schema, model and source resolution, and what the rules and scripts
call. The only package that Snakemake's rules and scripts import."""
