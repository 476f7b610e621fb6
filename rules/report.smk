# Figures and the run report, from cached artifacts only: `snakemake figures` redraws every figure and
# `snakemake report_html` writes results/report/index.html + summary.md without regenerating any set.
# Needs rules/concepts.smk (groups(), SET_IDS, rule concepts_analysis).

from preimage.pipeline.layout import FIGURES, intervention_figure_stems, report_figures, run_figure_stems

REPORT = config["report"]
RUN_FIGURES = run_figure_stems(REPORT["evaluate"])
CAPTIONS = {"samplers": "Samplers", "guidance": "Samplers", "evaluation": "Evaluation"}


rule report_evaluation:
    """Flags of the invariant-set method, the concept interventions' findings and the data-only baseline's flags
    against the planted shortcuts, those the world's models learned (their training metrics:
    report.learned_drop_points) counted apart from the others."""
    input:
        spurious="results/concepts/spurious.parquet",
        ground_truth="results/world/ground_truth.parquet",
        **({"baseline": "results/concepts/baseline.parquet"} if BASELINE_SPLIT else {}),
        **({"effects": rules.concepts_effects.output[0]} if INTERVENTIONS["enabled"] else {}),
        **learning_metrics(),
    output:
        summary="results/report/evaluation.parquet",
        pairs="results/report/evaluation_pairs.parquet",
    params:
        min_drop=REPORT["learned_drop_points"],
    priority: PRIORITY_REPORT_CHAIN
    log:
        "logs/report/evaluation.log",
    benchmark:
        "results/benchmarks/report_evaluation.tsv",
    script:
        "../scripts/report_evaluation.py"


rule figures_group:
    """One group's figures from its cached concept tables and sets: enrichment bars, cluster montage and
    embedding map (PNG + PDF), and a PNG grid of each of its sets. One job per group, so they draw in parallel."""
    input:
        scores=rules.concepts_analysis.output.table,
        clusters=rules.concepts_analysis.output.clusters,
        maps=rules.concepts_analysis.output.maps,
        members=group_members,
        groups=rules.concepts_groups.output.groups,
    output:
        **group_figures("{group}"),
    params:
        group=lambda wildcards: groups()[wildcards.group],
        tables=lambda wildcards: group_tables(wildcards.group),
        set_dirs=group_set_dirs,
        settings=canonical({key: REPORT[key] for key in ("top_concepts", "grid_members", "grid_columns")}),
    wildcard_constraints:
        group="[^/]+",
    log:
        "logs/figures/{group}.log",
    benchmark:
        "results/benchmarks/figures_group/{group}.tsv",
    script:
        "../scripts/figures_group.py"


rule figures_run:
    """The run's figures from the set summaries: sampler comparison (also as LaTeX and Markdown), guidance,
    and (report.evaluate) both methods' scores against the planted shortcuts."""
    input:
        summaries=expand("results/sets/{set_id}/summary.parquet", set_id=SET_IDS),
        **({"evaluation": rules.report_evaluation.output.summary} if REPORT["evaluate"] else {}),
    output:
        **{key: path for name, stem in RUN_FIGURES.items()
           for key, path in figure_pair(name, stem, name, CAPTIONS[name]).items()},
        latex=f"{FIGURES}/samplers.tex",
        markdown=f"{FIGURES}/samplers.md",
    params:
        stems=RUN_FIGURES,
    priority: PRIORITY_REPORT_CHAIN
    log:
        "logs/figures/run.log",
    benchmark:
        "results/benchmarks/figures_run.tsv",
    script:
        "../scripts/figures.py"


if INTERVENTIONS["enabled"]:

    rule figures_interventions:
        """The concept interventions' figures: each tested concept's effect on every readout with its interval,
        and edited pairs (without / with the concept) of each finding."""
        input:
            effects=rules.concepts_effects.output[0],
            edits=rules.concepts_interventions.output.table,
            images=rules.concepts_interventions.output.images,
        output:
            **{key: path for name, stem in intervention_figure_stems().items()
               for key, path in figure_pair(name, stem, f"interventions_{name}", "Interventions").items()},
        params:
            stems=intervention_figure_stems(),
            min_effect=CONCEPTS["effects"]["min_effect"],
        log:
            "logs/figures/interventions.log",
        benchmark:
            "results/benchmarks/figures_interventions.tsv",
        script:
            "../scripts/figures_interventions.py"


rule figures:
    """Every figure of the run."""
    input:
        lambda wildcards: every_figure(),


rule report_html:
    """One self-contained HTML page and a Markdown summary of the run."""
    input:
        figures=lambda wildcards: every_figure(),
        spurious="results/concepts/spurious.parquet",
        clusters=rules.concepts_analysis.output.clusters,
        calls=rules.concepts_groups.output.calls,
        groups=rules.concepts_groups.output.groups,
        summaries=expand("results/sets/{set_id}/summary.parquet", set_id=SET_IDS),
        evaluation=rules.report_evaluation.output if REPORT["evaluate"] else [],
        effects=rules.concepts_effects.output if INTERVENTIONS["enabled"] else [],
        directions=direction_report_inputs(),
    output:
        html="results/report/index.html",
        markdown="results/report/summary.md",
    params:
        title=lambda wildcards: REPORT["title"],  # a function: Snakemake would read braces in a string as wildcards
        groups=lambda wildcards: groups(),
        clusters=lambda wildcards: [group_tables(slug)["clusters"] for slug in groups()],
        figures=lambda wildcards: report_figures(groups(), REPORT["evaluate"], INTERVENTIONS["enabled"]),
        directions=DIRECTIONS["targets"],
    log:
        "logs/report/html.log",
    benchmark:
        "results/benchmarks/report_html.tsv",
    script:
        "../scripts/report_build.py"
