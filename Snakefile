# preimage: explain vision models by sampling their invariant sets with a diffusion prior.
# Run `snakemake --cores 2` for the default pipeline on the embedded shortcut world (see README.md).

from snakemake.utils import min_version

from preimage.pipeline.config import check_yaml, typed_overrides, validate_config, world_models, world_uses
from preimage.pipeline.models import base_model_dir, first_stage, model_dir
from preimage.pipeline.workflow import config_source, set_allocator_environment

min_version("8.0")

# Every job inherits this process's environment: the allocator settings that spare a CPU sampler the page faults
# of memory freed and mapped again at every step (unless the user set them).
set_allocator_environment()

# Snakemake's own message for a YAML syntax error names neither file nor line (it reads --configfile files before
# this Snakefile, so for those it stays Snakemake's); config.yaml's is reported here, with both.
check_yaml("config.yaml")


configfile: "config.yaml"


# Snakemake reads a nested --config value's scalars as strings ("8", "true", "null"): give them their YAML types.
typed_overrides(config, dict(workflow.config_settings.config))
validate_config(config, source=config_source(workflow.overwrite_configfiles, workflow.config_settings.config))


include: "rules/common.smk"


if world_uses(config):

    include: "rules/world.smk"


if world_models(config):

    include: "rules/training.smk"


include: "rules/sets.smk"
include: "rules/concepts.smk"
include: "rules/report.smk"
include: "rules/directions.smk"
include: "rules/benchmarks.smk"


rule all:
    default_target: True
    input:
        rules.report_html.output,
        # what does not wait for the groups checkpoint, listed so Snakemake plans it from the start
        expand("results/sets/{set_id}/summary.parquet", set_id=SET_IDS),
        rules.concepts_embed_reference.output,
        rules.concepts_predict_reference.output,
        [f"results/concepts/embeddings/real/{REAL_SPLIT}.parquet"] if REAL_SPLIT else [],  # for the groups' maps
        rules.concepts.input,  # the data-only baseline too, where no evaluation asks for it
        rules.directions.input,
