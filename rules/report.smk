# Figures and the run report, from cached artifacts only: `snakemake figures` redraws every figure and
# `snakemake report_html` writes results/report/index.html + summary.md without regenerating any set.
# Needs rules/concepts.smk (GROUPS, SET_IDS, rule concepts_group).

import os
from pathlib import Path

REPORT = config["report"]
FIGURES = "results/figures"


rule report_evaluation:
    """Flags of the invariant-set method and of the data-only baseline against the planted shortcuts."""
    input:
        spurious="results/concepts/spurious.parquet",
        baseline="results/concepts/baseline.parquet",
        ground_truth="results/world/ground_truth.parquet",
    output:
        summary="results/report/evaluation.parquet",
        pairs="results/report/evaluation_pairs.parquet",
    log:
        "logs/report/evaluation.log",
    script:
        "../scripts/report_evaluation.py"


rule figures:
    """Every figure, redrawn in one job (imports paid once) from cached Parquet and PNG artifacts: each
    group's enrichment bars, cluster montage, embedding map and set grids, the sampler and guidance
    figures, and (report.evaluate) both methods' scores against the planted shortcuts."""
    input:
        scores=expand(rules.concepts_group.output.spurious, group=GROUPS),
        clusters=expand(rules.concepts_group.output.clusters, group=GROUPS),
        maps=expand(rules.concepts_group.output.map, group=GROUPS),
        members=expand("results/sets/{set_id}/members.parquet", set_id=SET_IDS),
        summaries=expand("results/sets/{set_id}/summary.parquet", set_id=SET_IDS),
        **({"evaluation": rules.report_evaluation.output.summary} if REPORT["evaluate"] else {}),
    output:
        **{name: path for group in GROUPS for name, path in group_figures(group).items()},
        **figure_pair("samplers", f"{FIGURES}/samplers", "samplers", "Samplers"),
        latex=f"{FIGURES}/samplers.tex",
        markdown=f"{FIGURES}/samplers.md",
        **figure_pair("guidance", f"{FIGURES}/guidance", "guidance", "Samplers"),
        **(figure_pair("evaluation", f"{FIGURES}/evaluation", "evaluation", "Evaluation")
           if REPORT["evaluate"] else {}),
    params:
        groups=GROUPS,
        set_dirs=lambda wildcards, input: [Path(members).parent for members in input.members],
        figures=lambda wildcards, output: os.path.commonpath(output),
        settings=REPORT,
    log:
        "logs/figures.log",
    script:
        "../scripts/figures.py"


rule report_html:
    """One self-contained HTML page and a Markdown summary of the run."""
    input:
        figures=list(rules.figures.output),
        spurious="results/concepts/spurious.parquet",
        clusters=expand("results/concepts/clusters/{group}/clusters.parquet", group=GROUPS),
        summaries=expand("results/sets/{set_id}/summary.parquet", set_id=SET_IDS),
        evaluation=rules.report_evaluation.output if REPORT["evaluate"] else [],
    output:
        html="results/report/index.html",
        markdown="results/report/summary.md",
    params:
        title=REPORT["title"],
        groups=GROUPS,
        figures=lambda wildcards, input: os.path.commonpath(input.figures),
    log:
        "logs/report/html.log",
    script:
        "../scripts/report_build.py"
