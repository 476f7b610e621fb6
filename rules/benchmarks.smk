# The many-world benchmark, not part of the default run: `snakemake --cores 2 benchmark_worlds` draws
# benchmark_worlds.worlds worlds from benchmark_worlds.seed, runs the pipeline on each in its own folder under
# results/benchmark_worlds/seed-<seed>/ (only its classifier trains) and tabulates both methods' scores against the
# planted shortcuts (docs/benchmarks.md). Another seed: `snakemake results/benchmark_worlds/seed-<seed>/worlds.md`.

BENCHMARK_WORLDS = config["benchmark_worlds"]
WORLDS_DIR = "results/benchmark_worlds/seed-{seed}"


rule world_benchmark:
    """Run the pipeline on each world drawn from a seed (a finished world is not rerun) and tabulate the scores."""
    output:
        table=f"{WORLDS_DIR}/worlds.parquet",
        markdown=f"{WORLDS_DIR}/worlds.md",
        png=f"{WORLDS_DIR}/worlds.png",
        pdf=f"{WORLDS_DIR}/worlds.pdf",
    params:
        config=canonical(config),  # every world's config derives from the whole of it
        snakefile=workflow.main_snakefile,
        figure=f"{WORLDS_DIR}/worlds",
    threads: BENCHMARK_WORLDS["cores"]
    wildcard_constraints:
        seed=r"\d+",
    log:
        "logs/benchmark_worlds/seed-{seed}.log",
    benchmark:
        "results/benchmarks/world_benchmark/seed-{seed}.tsv"
    script:
        "../scripts/benchmark_worlds.py"


rule benchmark_worlds:
    """Target: the many-world benchmark on the worlds of benchmark_worlds.seed."""
    input:
        expand(rules.world_benchmark.output, seed=BENCHMARK_WORLDS["seed"]),
