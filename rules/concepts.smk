# Concepts in invariant sets: CLIP embeddings, named clusters, spurious-feature scores and the data-only
# baseline. Explanation rules never take results/world/ground_truth.parquet as input. Real images (the baseline's
# labelled test images, the real points of embedding maps) are a world split or, with `sources`, the images of
# the run's own folder or manifest.

from pathlib import Path

from preimage.pipeline.config import SOURCES, SPLIT_KINDS, models_named, regression_objectives
from preimage.pipeline.workflow import call_keeping_set_ids, groups_settings, read_groups, set_ids

CONCEPTS = config["concepts"]
CONCEPT_GPUS = gpus(config)
SET_IDS = set_ids(config)
CALL_KEEPING = call_keeping_set_ids(config)
BASELINE_SPLIT = CONCEPTS["baseline_split"]
REAL_SPLIT = CONCEPTS["real_split"]
VOCABULARY_FILE = [CONCEPTS["vocabulary"]] if Path(CONCEPTS["vocabulary"]).is_file() else []
INTERVENTIONS = CONCEPTS["interventions"]
REGRESSORS = list(models_named(regression_objectives(SETS["objectives"])))


wildcard_constraints:
    group="[^/]+",
    split="|".join([*SPLIT_KINDS, SOURCES]),


checkpoint concepts_groups:
    """Which group each set joins. A set that keeps the model's call on its source (label, logits or probs
    without a target) joins the class the model assigns the source, read from the set itself, so a source the
    model misclassifies explains the class the model sees; the report lists such sources."""
    input:
        members=expand("results/sets/{set_id}/members.parquet", set_id=CALL_KEEPING),
    output:
        groups="results/concepts/groups.parquet",
        calls="results/concepts/source_calls.parquet",
    params:
        config=canonical(groups_settings(config)),
        set_ids=CALL_KEEPING,
    log:
        "logs/concepts/groups.log",
    benchmark:
        "results/benchmarks/concepts_groups.tsv",
    script:
        "../scripts/concepts_groups.py"


rule concepts_vocabulary:
    """Text embeddings of the concept vocabulary and of one prompt per class of the classifier."""
    input:
        **model_inputs("clip", "classifier"),
        vocabulary_file=VOCABULARY_FILE,
    output:
        table="results/concepts/vocabulary.parquet",
        text="results/concepts/vocabulary.txt",
    params:
        vocabulary=CONCEPTS["vocabulary"],
        prompt_template=CONCEPTS["prompt_template"],
        class_template=CONCEPTS["class_template"],
        shapes=config["world"]["shapes"] if CONCEPTS["vocabulary"] == "world" else None,
        config=model_config(config, "clip", "classifier"),
        device=config["device"],
    priority: PRIORITY_INPUTS
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/vocabulary.log",
    benchmark:
        "results/benchmarks/concepts_vocabulary.tsv",
    script:
        "../scripts/concepts_vocabulary.py"


rule concepts_embed_groups:
    """CLIP embeddings of the accepted members and sources of every group's sets, in one job: the groups are known
    only once every set is drawn, and one process loads the model once for them all (a job per group spent most of
    its time importing open_clip and torch)."""
    input:
        **model_inputs("clip"),
        members=grouped_members,
        groups=rules.concepts_groups.output.groups,
    output:
        "results/concepts/embeddings/groups.parquet",
    params:
        set_dirs=grouped_set_dirs,
        config=model_config(config, "clip"),
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/embed_groups.log",
    benchmark:
        "results/benchmarks/concepts_embed_groups.tsv",
    script:
        "../scripts/concepts_embed.py"


use rule concepts_embed_groups as concepts_embed_reference with:
    input:
        **model_inputs("clip"),
        members="results/reference/members.parquet",
    output:
        "results/concepts/embeddings/reference.parquet",
    params:
        set_dirs=["results/reference"],
        config=model_config(config, "clip"),
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    log:
        "logs/concepts/embed_reference.log",
    benchmark:
        "results/benchmarks/concepts_embed_reference.tsv",


rule real_sources:
    """The run's own real images for the concept step: every image of sets.sources' folder or manifest (of its
    classes), at most concepts.real_images drawn evenly over the classes, with their labels and pixels."""
    input:
        source_listing(),
        real_image_files(),
    output:
        table="results/real/sources.parquet",
        images="results/real/sources.npy",
    params:
        # and the world for a world classifier, whose class names come from it
        config=canonical(({"world": shared_world(config)} if "classifier" in world_models(config) else {})
                         | {"sets": {"sources": SETS["sources"]}, "models": {"classifier": config["models"]["classifier"]},
                            "concepts": {"real_images": CONCEPTS["real_images"]}}),
    log:
        "logs/real_sources.log",
    benchmark:
        "results/benchmarks/real_sources.tsv",
    script:
        "../scripts/real_sources.py"


rule concepts_embed_real:
    """CLIP embeddings of every real image of a split (the baseline's test images, the real images drawn on
    embedding maps)."""
    input:
        unpack(real_images),
        **model_inputs("clip"),
    output:
        "results/concepts/embeddings/real/{split}.parquet",
    params:
        config=model_config(config, "clip"),
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/embed_real/{split}.log",
    benchmark:
        "results/benchmarks/concepts_embed_real/{split}.tsv",
    script:
        "../scripts/concepts_embed_real.py"


rule concepts_predict_real:
    """The explained classifier's predictions on a real-image split."""
    input:
        unpack(real_images),
        **model_inputs("classifier"),
    output:
        "results/concepts/predictions/{split}.parquet",
    params:
        config=model_config(config, "classifier"),
        device=config["device"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/predict_real/{split}.log",
    benchmark:
        "results/benchmarks/concepts_predict_real/{split}.tsv",
    script:
        "../scripts/concepts_predict_real.py"


rule concepts_predict_reference:
    """The explained classifier's predicted class and each regressor's output for every reference image (the
    decision effects and call rates that confirm flags)."""
    input:
        **model_inputs("classifier", *REGRESSORS),
        members="results/reference/members.parquet",
    output:
        "results/concepts/reference_predictions.parquet",
    params:
        config=model_config(config, "classifier", *REGRESSORS),
        regressors=REGRESSORS,
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/predict_reference.log",
    benchmark:
        "results/benchmarks/concepts_predict_reference.tsv",
    script:
        "../scripts/concepts_predict_reference.py"


rule concepts_analysis:
    """Every group's clusters (pooled and per set, named by the vocabulary), its concepts ranked by how much the
    decision depends on them, flagged against a permutation null and confirmed on the model's calls on the
    reference (a regression counterfactual's group: against the other direction's members, confirmed on the
    regressor's outputs on the reference), and the 2-D map of its embeddings (t-SNE, laid out here so that drawing
    the figures stays fast); then every group's scores in one table, each class group's mirror images of another
    class's finding marked (a shortcut's absence looks enriched in the other classes) and their flags withdrawn.
    One job on its threads as worker processes, which import scikit-learn once rather than once per group."""
    input:
        groups=groups_table,
        vocabulary=rules.concepts_vocabulary.output.table,
        embeddings=rules.concepts_embed_groups.output[0],
        reference=rules.concepts_embed_reference.output[0],
        reference_predictions=rules.concepts_predict_reference.output[0],
        **({"real": f"results/concepts/embeddings/real/{REAL_SPLIT}.parquet"} if REAL_SPLIT else {}),
    output:
        **{name: directory(folder) for name, folder in GROUP_TABLE_DIRS.items()},
        table="results/concepts/spurious.parquet",
    params:
        groups=lambda wildcards: groups(),
        objectives=canonical(SETS["objectives"]),
        synonyms=canonical(CONCEPTS["synonyms"]),
        clusters=canonical(CONCEPTS["clusters"]),
        spurious=canonical(CONCEPTS["spurious"]),
        map_points=CONCEPTS["map_points"],
    threads: workflow.cores
    log:
        "logs/concepts/analysis.log",
    benchmark:
        "results/benchmarks/concepts_analysis.tsv",
    script:
        "../scripts/concepts_analysis.py"


if INTERVENTIONS["enabled"]:

    rule concepts_interventions:
        """The best candidate concepts of each class and regression group edited into (or out of) the first
        reference images by CLIP-guided late starts, with the classifier's class probabilities and each
        regressor's output on every edit and on its unguided twin."""
        input:
            **model_inputs("prior", "clip", "classifier", *REGRESSORS),
            scores=rules.concepts_analysis.output.table,
            vocabulary=rules.concepts_vocabulary.output.table,
            reference="results/reference/members.parquet",
        output:
            table="results/concepts/interventions/edits.parquet",
            images="results/concepts/interventions/images.npy",
        params:
            config=canonical(model_config(config, "prior", "clip", "classifier", *REGRESSORS)
                             | {"sets": {"objectives": regression_objectives(SETS["objectives"])}}),
            settings=canonical(INTERVENTIONS),
        resources:
            gpu=CONCEPT_GPUS,
        log:
            "logs/concepts/interventions.log",
        benchmark:
            "results/benchmarks/concepts_interventions.tsv",
        script:
            "../scripts/concepts_interventions.py"

    rule concepts_effects:
        """Each tested concept's effect on every class's probability and regressor's output, with its bootstrap
        interval, and the findings they support."""
        input:
            rules.concepts_interventions.output.table,
        output:
            "results/concepts/effects.parquet",
        params:
            settings=canonical(CONCEPTS["effects"]),
            regression=REGRESSORS,
        log:
            "logs/concepts/effects.log",
        benchmark:
            "results/benchmarks/concepts_effects.tsv",
        script:
            "../scripts/concepts_effects.py"


if BASELINE_SPLIT:

    rule concepts_baseline:
        """Data-only baseline: concepts of real test images the classifier gets wrong, scored like the sets."""
        input:
            groups=rules.concepts_groups.output.groups,
            vocabulary=rules.concepts_vocabulary.output.table,
            embeddings=f"results/concepts/embeddings/real/{BASELINE_SPLIT}.parquet",
            predictions=f"results/concepts/predictions/{BASELINE_SPLIT}.parquet",
        output:
            "results/concepts/baseline.parquet",
        params:
            synonyms=canonical(CONCEPTS["synonyms"]),
            settings=canonical(CONCEPTS["spurious"]),
        log:
            "logs/concepts/baseline.log",
        benchmark:
            "results/benchmarks/concepts_baseline.tsv",
        script:
            "../scripts/concepts_baseline.py"


rule concepts:
    """Every concept artifact: scores, clusters and (with concepts.baseline_split) the baseline."""
    input:
        rules.concepts_analysis.output,
        rules.concepts_baseline.output if BASELINE_SPLIT else [],
        rules.concepts_effects.output if INTERVENTIONS["enabled"] else [],
