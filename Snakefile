# preimage: explain vision models by sampling their invariant sets with a diffusion prior.
# Run `snakemake --cores 2` for the default pipeline on the embedded shortcut world (see README.md).

from snakemake.utils import min_version

from preimage.config import prior_first_stage, validate_config
from preimage.workflow import base_prior_dir, model_dir

min_version("8.0")


configfile: "config.yaml"


validate_config(config, source="config.yaml with --config overrides")


include: "rules/common.smk"
include: "rules/world.smk"
include: "rules/training.smk"
include: "rules/sets.smk"
include: "rules/concepts.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report_html.output,
