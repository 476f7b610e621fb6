# Input, output and params helpers shared by the rule files, kept apart from the rules (snakemake --lint) so that
# each rule file reads as its steps. They look globals up when called. groups() and FIGURES come from
# rules/concepts.smk and rules/report.smk, the training outputs from rules/training.smk.

from pathlib import Path

from preimage.pipeline.config import SOURCES, models_named, rejection_specs, shared_world, world_models, world_section
from preimage.pipeline.sources import select_real_images
from preimage.pipeline.layout import (GROUP_TABLE_DIRS, direction_figure_stems, direction_files, group_figure_stems,
                                     group_tables, set_figure_dir)
from preimage.pipeline.workflow import (canonical, model_config, real_model_files, resolved_device,
                                       set_job_models, source_files)

SETS = config["sets"]
DIRECTIONS = config["directions"]
SOURCE_FILES = source_files(config)
REAL_IMAGE_SPLITS = {config["concepts"]["baseline_split"], config["concepts"]["real_split"]}


def model_inputs(*kinds):
    """The files of the models a job loads (a world model's training output, a real model's files)."""
    trained = {}
    if world_models(config):
        trained = {"classifier": rules.train_classifier.output.weights, "prior": PRIOR_UNET,
                   "clip": rules.train_clip.output.weights, "robust": rules.train_robust.output.weights}
        if "regressor" in world_models(config):
            trained["regressor"] = rules.train_regressor.output.weights
    inputs = {kind: trained[kind] for kind in kinds if kind in world_models(config)}
    real = real_model_files(config, *kinds)
    return inputs | ({"model_files": real} if real else {})


def learning_metrics():
    """{"classifier_metrics", "regressor_metrics": the training metrics.json of those that are world models}: how
    much each learned its planted shortcuts, which the evaluation reads (the regressor's where it is trained)."""
    metrics = {}
    if "classifier" in world_models(config):
        metrics["classifier_metrics"] = rules.train_classifier.output.metrics
    if "regressor" in world_models(config) and REGRESSOR_DIR:
        metrics["regressor_metrics"] = rules.train_regressor.output.metrics
    return metrics


POOL_MEMBERS = {"shared": "results/pool/members.parquet", "reference": "results/reference/members.parquet"}


def draw_pool(wildcards):
    """{"pool": the members table of the prior draws that rejection sets test instead of drawing their own}
    (`sets.rejection_pool`: the shared pool or the reference sample); nothing for kind `none`, or for a run whose
    objectives no rejection sampler draws."""
    kind = SETS["rejection_pool"]["kind"]
    return {"pool": POOL_MEMBERS[kind]} if rejection_specs(SETS) and kind != "none" else {}


# Job priorities. Snakemake starts the highest ready job first and does not hand a job's priority to the jobs it
# needs, so those get at least as much. With two cores the run ends soonest when the long jobs start early and the
# short ones that only the concept step needs (priority 0) fill the core the last set job leaves free
# (docs/benchmarks.md, "Allocator, planning and set grids").
PRIORITY_INPUTS = 4  # short jobs the long ones need: the sources, the world's splits, the vocabulary, the check; and the
# links that place each source's sets, which the concept step waits for
PRIORITY_START = 3  # side by side first: the pool, which every set job waits for, and the global directions, the
# longest jobs (the reference sample after them makes the two cores' shares of the long jobs about even)
PRIORITY_LONG = 2  # the reference sample, a long job no set waits for
PRIORITY_SETS = 1
PRIORITY_REPORT_CHAIN = 1  # after the sets: the evaluation and the run's figures, which the report waits for, start
# before the nine group figure jobs, so the report does not wait for a 7-s job started last


def gpus(config):
    """GPUs a generation or embedding job asks for: one when the run's device resolves to CUDA."""
    return 1 if resolved_device(config["device"]) == "cuda" else 0


def groups():
    """The run's concept groups by slug: known once the call-keeping sets are drawn (checkpoint)."""
    return read_groups(checkpoints.concepts_groups.get().output.groups)


def groups_table(wildcards):
    """The groups table, as an input function: a job whose params read the groups must also take the table through
    an input function, or Snakemake plans it as if the checkpoint were still to run (and its consumers again)."""
    return checkpoints.concepts_groups.get().output.groups


def every_figure():
    """Every figure file of the run: each group's, the run's and the concept interventions'."""
    interventions = rules.figures_interventions.output if config["concepts"]["interventions"]["enabled"] else []
    return [*expand(rules.figures_group.output, group=groups()), *rules.figures_run.output, *interventions]


def group_set_dirs(wildcards):
    return [f"results/sets/{s}" for s in groups()[wildcards.group].set_ids]


def group_members(wildcards):
    return [f"results/sets/{s}/members.parquet" for s in groups()[wildcards.group].set_ids]


def grouped_set_dirs(wildcards):
    """The folder of every set of every group, group by group."""
    return [f"results/sets/{s}" for group in groups().values() for s in group.set_ids]


def grouped_members(wildcards):
    return [f"{folder}/members.parquet" for folder in grouped_set_dirs(wildcards)]


def figure_pair(name, stem, caption, category, subcategory=None):
    """A figure's PNG (in `snakemake --report`, with its caption) and PDF, as outputs `name` and `name`_pdf."""
    png = report(f"{stem}.png", caption=f"../report/{caption}.rst", category=category, subcategory=subcategory)
    return {name: png, f"{name}_pdf": f"{stem}.pdf"}


def group_figures(group):
    """A group's enrichment bars, cluster montage, embedding map and folder of set grids, as outputs named
    <figure> (and <figure>_pdf) and `sets`; `group` may be the wildcard "{group}"."""
    figures = {}
    for name, stem in group_figure_stems(group).items():
        figures.update(figure_pair(name, stem, name, "Concepts", group))
    figures["sets"] = report(directory(set_figure_dir(group)), patterns=["{set_id}.png"],
                             caption="../report/set_grid.rst",
                             category="Invariant sets", subcategory=group)
    return figures


def source_listing():
    """What the selection of source images reads: a manifest, and a real classifier's metadata (its class
    names), but no weights or pixels, so replacing them reruns only the jobs that read them."""
    sources = SETS["sources"]
    manifest = [sources["path"]] if sources["kind"] == "manifest" else []
    return manifest + [file for file in real_model_files(config, "classifier") if Path(file).name == "config.json"]


def real_image_files():
    """The pixels `real_sources` reads: every image of the sources' folder or manifest that it takes."""
    return sorted(select_real_images(config)["source"]) if SOURCES in REAL_IMAGE_SPLITS else []


def objective_check_settings():
    """What the objectives' check reads: the objectives and the entries of the classifier and of any model they
    name (a world model's folder is named by the world and its training settings); not the device: the check runs
    on the CPU."""
    objectives = SETS["objectives"]
    kinds = ("classifier", *models_named(objectives))
    trained = [kind for kind in kinds if kind in world_models(config)]
    world = ({"world": world_section(config, trained),
              "training": {kind: config["training"][kind] for kind in trained}} if trained else {})
    return canonical({"models": {kind: config["models"][kind] for kind in kinds},
                      "sets": {"objectives": objectives}} | world)


def job_settings(wildcards):
    """What a set job reads of the config: models, the objectives, the samplers, LPIPS, and whether its
    rejection sets test a pool (the pool's own settings reach the job as its input file, so drawing a new pool
    reruns the sets that test it and nothing else)."""
    sets = {key: SETS[key] for key in ("members", "seed", "samplers", "sampler_overrides", "objectives")}
    sets["rejection_pool"] = {"kind": SETS["rejection_pool"]["kind"]}
    models = model_config(config, *set_job_models(config))
    world = {"world": shared_world(config)} if SETS["sources"]["kind"] == "world" and "world" not in models else {}
    return canonical(models | world
                     | {"sets": sets, "perceptual": config["perceptual"]})


def real_images(wildcards):
    """A real-image split's table and uint8 pixels: the world's, or those of the run's sources."""
    folder = "results/real" if wildcards.split == SOURCES else "results/world"
    return {"table": f"{folder}/{wildcards.split}.parquet", "images": f"{folder}/{wildcards.split}.npy"}


def direction_images():
    """The split a global direction is found and measured on (`directions.split`): its table and uint8 pixels."""
    split = DIRECTIONS["split"]
    folder = "results/real" if split == SOURCES else "results/world"
    return {"table": f"{folder}/{split}.parquet", "images": f"{folder}/{split}.npy"}


def direction_settings():
    """What a global direction's job reads of `directions`: all but the list of targets, so adding a target
    finds only its own direction."""
    return {key: value for key, value in DIRECTIONS.items() if key != "targets"}


def direction_report_inputs():
    """Every target's direction files the report reads, its figures and (report.evaluate) the oracle's reading."""
    files = []
    for target in DIRECTIONS["targets"]:
        found = direction_files(target)
        files += [found["summary"], found["concepts"], found["search"]]
        files += [f"{stem}.png" for stem in direction_figure_stems(target).values()]
        if config["report"]["evaluate"]:
            files.append(f"results/directions/{target}/oracle.parquet")
    return files
