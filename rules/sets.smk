# Invariant-set generation: source selection, the set jobs (each draws every objective's and sampler's set for
# `sets.sources_per_job` sources of one class, so a job loads the models once for them all) and the links that place
# each source's sets under results/sets/, and the unconstrained reference sample of the prior. Each rule's params
# are the config sections it reads (canonical: sorted keys), so editing the concept or report settings reruns no set.

from preimage.pipeline.config import set_kinds
from preimage.pipeline.models import prompt_targets, prompts_by_class
from preimage.pipeline.workflow import check_pool_size, select_sources, set_ids, set_jobs

GEN_GPUS = gpus(config)
SET_KINDS = set_kinds(config["sets"])
SET_JOBS = set_jobs(config)  # {job id (its first source): its sources}
JOB_OF_SOURCE = {source: job for job, sources in SET_JOBS.items() for source in sources}
check_pool_size(config, select_sources(config)["class_name"])
# a class-prompted prior's unconstrained draws are made under the counterfactuals' target prompts too
PROMPT_TARGETS = {"prompt_targets": prompt_targets(config)} if prompts_by_class(config) else {}


rule select_sources:
    """The source images: a seeded per-class pick from a world split, an image folder or a manifest."""
    input:
        source_listing(),
    output:
        "results/sources.parquet",
    params:
        config=canonical(({"world": shared_world(config)} if "world" in config else {})
                         | {"sets": {"sources": SETS["sources"]}, "models": {"classifier": config["models"]["classifier"]}}),
    priority: PRIORITY_INPUTS
    log:
        "logs/select_sources.log",
    benchmark:
        "results/benchmarks/select_sources.tsv",
    script:
        "../scripts/select_sources.py"


rule check_objectives:
    """Every objective built on the classifier (layer names, class names, units) once, before any set is drawn; one
    job for them all, since every set job reads every objective: a new or edited objective redraws each source's
    sets anyway, and new classifier weights recheck and redraw all."""
    input:
        **model_inputs("classifier", *models_named(SETS["objectives"])),
    output:
        "results/checks/objectives.json",
    params:
        config=objective_check_settings(),
    threads: 1
    priority: PRIORITY_INPUTS
    log:
        "logs/check_objectives.log",
    benchmark:
        "results/benchmarks/check_objectives.tsv",
    script:
        "../scripts/check_objectives.py"


rule invariant_sets:
    """Every objective's and sampler's set for the sources of one set job (members batched, GPU when present), into
    the job's folder; with `sets.rejection_pool`, rejection sets test pooled prior draws instead of drawing their
    own."""
    input:
        unpack(lambda wildcards: model_inputs(*set_job_models(config))),
        unpack(draw_pool),
        sources="results/sources.parquet",
        objectives_checked=rules.check_objectives.output,
        images=lambda wildcards: [SOURCE_FILES[source] for source in SET_JOBS[wildcards.job] if source in SOURCE_FILES],
    output:
        sets=directory("results/set_jobs/{job}"),
    wildcard_constraints:
        job="[^/]+",
    params:
        config=job_settings,
        sources=lambda wildcards: SET_JOBS[wildcards.job],
    threads: 1
    priority: PRIORITY_SETS
    resources:
        gpu=GEN_GPUS,
    log:
        "logs/invariant_sets/{job}.log",
    benchmark:
        "results/benchmarks/invariant_sets/{job}.tsv",
    script:
        "../scripts/invariant_sets.py"


rule link_sets:
    """One source's sets, hard-linked from its set job's folder to results/sets/<set id>/, where the concept step
    reads them (a fraction of a second, on the machine running Snakemake)."""
    input:
        sets=lambda wildcards: rules.invariant_sets.output.sets.format(job=JOB_OF_SOURCE[wildcards.source]),
    output:
        summaries=[f"results/sets/{{source}}__{objective}__{sampler}/summary.parquet" for objective, sampler in SET_KINDS],
        members=[f"results/sets/{{source}}__{objective}__{sampler}/members.parquet" for objective, sampler in SET_KINDS],
    wildcard_constraints:
        source="[^/]+",
    localrule: True
    priority: PRIORITY_INPUTS
    log:
        "logs/link_sets/{source}.log",
    benchmark:
        "results/benchmarks/link_sets/{source}.tsv",
    script:
        "../scripts/link_sets.py"


rule reference_samples:
    """Plain prior samples, the matched reference for concept enrichment."""
    input:
        unpack(lambda wildcards: model_inputs("classifier", "prior")),
        sources="results/sources.parquet",
    output:
        members="results/reference/members.parquet",
        summary="results/reference/summary.parquet",
    params:
        config=canonical(model_config(config, "classifier", "prior") | {"reference": config["reference"]} | PROMPT_TARGETS),
    # one thread: a job of all cores would only start once both were free at once, which a stream of one-thread
    # set jobs never leaves them
    threads: 1
    priority: PRIORITY_LONG
    resources:
        gpu=GEN_GPUS,
    log:
        "logs/reference_samples.log",
    benchmark:
        "results/benchmarks/reference_samples.tsv",
    script:
        "../scripts/reference_samples.py"


rule rejection_pool:
    """The shared pool of pure-noise prior draws that rejection sets test (`sets.rejection_pool`, kind `shared`):
    drawn once, as the reference is but from a seed of its own."""
    input:
        unpack(lambda wildcards: model_inputs("classifier", "prior")),
        sources="results/sources.parquet",
    output:
        members="results/pool/members.parquet",
        summary="results/pool/summary.parquet",
    params:
        config=canonical(model_config(config, "classifier", "prior")
                         | {"reference": {key: config["reference"][key] for key in ("num_steps", "solver")},
                            "sets": {"rejection_pool": SETS["rejection_pool"]}} | PROMPT_TARGETS),
    threads: 1
    priority: PRIORITY_START
    resources:
        gpu=GEN_GPUS,
    log:
        "logs/rejection_pool.log",
    benchmark:
        "results/benchmarks/rejection_pool.tsv",
    script:
        "../scripts/rejection_pool.py"


rule sets:
    """Every invariant set of the configuration and the reference sample."""
    input:
        expand("results/sets/{set_id}/summary.parquet", set_id=set_ids(config)),
        rules.reference_samples.output,
