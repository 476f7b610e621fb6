# Data of the embedded shortcut world: attribute tables, pixels and the ground truth of its shortcuts.

from preimage.pipeline.config import SPLIT_KINDS, shared_world


rule world_data:
    """One split of the world: attributes as Parquet, pixels as a uint8 .npy array."""
    output:
        table="results/world/{split}.parquet",
        images="results/world/{split}.npy",
        preview="results/world/{split}.png",
    wildcard_constraints:
        split="|".join(SPLIT_KINDS),
    params:
        world=canonical(shared_world(config)),
    priority: PRIORITY_INPUTS
    log:
        "logs/world_data/{split}.log",
    benchmark:
        "results/benchmarks/world_data/{split}.tsv",
    script:
        "../scripts/world_data.py"


rule world_ground_truth:
    """The planted shortcuts, for evaluation code only: explanation rules never take this as input."""
    output:
        "results/world/ground_truth.parquet",
    params:
        world=canonical(config["world"]),  # the regression task too
    log:
        "logs/world_ground_truth.log",
    benchmark:
        "results/benchmarks/world_ground_truth.tsv",
    script:
        "../scripts/world_ground_truth.py"
