# Concepts in invariant sets: CLIP embeddings, named clusters, spurious-feature scores and the data-only
# baseline. Explanation rules never take results/world/ground_truth.parquet as input.

from preimage.concepts.layout import concept_groups, model_config
from preimage.workflow import set_class, set_ids

CONCEPTS = config["concepts"]
CONCEPT_GPUS = 1 if config["device"] == "cuda" else 0
MODEL_CONFIG = model_config(config)
SET_IDS = set_ids(config)
_SOURCE_CLASS = {set_id: set_class(config, set_id) for set_id in SET_IDS}
GROUPS = concept_groups(SET_IDS, _SOURCE_CLASS.__getitem__, config["sets"]["objectives"])
CLASS_CORES = sorted({group.core for group in GROUPS.values() if group.kind == "class"})
BASELINE_SPLIT = CONCEPTS["baseline_split"]
REAL_SPLIT = CONCEPTS["real_split"]


wildcard_constraints:
    group="[^/]+",


rule concepts_vocabulary:
    """Text embeddings of the concept vocabulary and of one prompt per class of the classifier."""
    input:
        **world_models("clip", "classifier"),
    output:
        table="results/concepts/vocabulary.parquet",
        text="results/concepts/vocabulary.txt",
    params:
        vocabulary=CONCEPTS["vocabulary"],
        prompt_template=CONCEPTS["prompt_template"],
        class_template=CONCEPTS["class_template"],
        config=MODEL_CONFIG,
        device=config["device"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/vocabulary.log",
    script:
        "../scripts/concepts_vocabulary.py"


rule concepts_embed_group:
    """CLIP embeddings of the accepted members and sources of one group's sets (one job per group, so the
    model loads once per group rather than once per set)."""
    input:
        **world_models("clip"),
        members=group_members,
    output:
        "results/concepts/embeddings/groups/{group}.parquet",
    params:
        set_dirs=group_set_dirs,
        config=MODEL_CONFIG,
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/embed/{group}.log",
    script:
        "../scripts/concepts_embed.py"


use rule concepts_embed_group as concepts_embed_reference with:
    input:
        **world_models("clip"),
        members="results/reference/members.parquet",
    output:
        "results/concepts/embeddings/reference.parquet",
    params:
        set_dirs=["results/reference"],
        config=MODEL_CONFIG,
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    log:
        "logs/concepts/embed_reference.log",


rule concepts_embed_world:
    """CLIP embeddings of every real image of a world split (the baseline's test images, the real images
    drawn on embedding maps)."""
    input:
        **world_models("clip"),
        table="results/world/{split}.parquet",
        images="results/world/{split}.npy",
    output:
        "results/concepts/embeddings/world/{split}.parquet",
    params:
        config=MODEL_CONFIG,
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/embed_world/{split}.log",
    script:
        "../scripts/concepts_embed_world.py"


rule concepts_predict_world:
    """The explained classifier's predictions on a world split."""
    input:
        **world_models("classifier"),
        table="results/world/{split}.parquet",
        images="results/world/{split}.npy",
    output:
        "results/concepts/predictions/{split}.parquet",
    params:
        config=MODEL_CONFIG,
        device=config["device"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/predict_world/{split}.log",
    script:
        "../scripts/concepts_predict_world.py"


rule concepts_predict_reference:
    """The explained classifier's predicted class for every reference image (the decision effect)."""
    input:
        **world_models("classifier"),
        members="results/reference/members.parquet",
    output:
        "results/concepts/reference_predictions.parquet",
    params:
        config=MODEL_CONFIG,
        device=config["device"],
        batch_size=CONCEPTS["batch_size"],
    resources:
        gpu=CONCEPT_GPUS,
    log:
        "logs/concepts/predict_reference.log",
    script:
        "../scripts/concepts_predict_reference.py"


rule concepts_group:
    """One group's clusters (pooled and per set, named by the vocabulary), its concepts ranked by how much
    the decision depends on them, flagged against a permutation null and confirmed on the model's calls on
    the reference, and the 2-D map of its embeddings
    (t-SNE, laid out here so that drawing the figures stays fast)."""
    input:
        vocabulary=rules.concepts_vocabulary.output.table,
        embeddings=rules.concepts_embed_group.output[0],
        reference=rules.concepts_embed_reference.output[0],
        reference_predictions=rules.concepts_predict_reference.output[0],
        **({"real": f"results/concepts/embeddings/world/{REAL_SPLIT}.parquet"} if REAL_SPLIT else {}),
    output:
        assignments="results/concepts/clusters/{group}/assignments.parquet",
        clusters="results/concepts/clusters/{group}/clusters.parquet",
        spurious="results/concepts/spurious/{group}.parquet",
        map="results/concepts/maps/{group}.parquet",
    params:
        group=lambda wildcards: GROUPS[wildcards.group],
        synonyms=CONCEPTS["synonyms"],
        clusters=CONCEPTS["clusters"],
        spurious=CONCEPTS["spurious"],
        map_points=CONCEPTS["map_points"],
    log:
        "logs/concepts/group/{group}.log",
    script:
        "../scripts/concepts_group.py"


rule concepts_spurious_table:
    """Every group's concept scores in one table."""
    input:
        expand("results/concepts/spurious/{group}.parquet", group=GROUPS),
    output:
        "results/concepts/spurious.parquet",
    log:
        "logs/concepts/spurious_table.log",
    script:
        "../scripts/concepts_collect.py"


rule concepts_baseline:
    """Data-only baseline: concepts of real test images the classifier gets wrong, scored like the sets."""
    input:
        vocabulary=rules.concepts_vocabulary.output.table,
        embeddings=f"results/concepts/embeddings/world/{BASELINE_SPLIT}.parquet",
        predictions=f"results/concepts/predictions/{BASELINE_SPLIT}.parquet",
    output:
        "results/concepts/baseline.parquet",
    params:
        classes=CLASS_CORES,
        synonyms=CONCEPTS["synonyms"],
        settings=CONCEPTS["spurious"],
    log:
        "logs/concepts/baseline.log",
    script:
        "../scripts/concepts_baseline.py"


rule concepts:
    """Every concept artifact: scores, clusters and (for the world) the baseline."""
    input:
        rules.concepts_spurious_table.output,
        expand("results/concepts/clusters/{group}/clusters.parquet", group=GROUPS),
        rules.concepts_baseline.output if config["report"]["evaluate"] else [],
