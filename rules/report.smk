# Figures and the run report, from cached artifacts only: `snakemake figures` redraws every figure and
# `snakemake report_html` writes results/report/index.html + summary.md without regenerating any set.
# Needs rules/concepts.smk (GROUPS, SET_IDS, group_set_dirs, group_members).

from preimage.report.build import GROUP_FIGURES

REPORT = config["report"]
REAL_SPLIT = config["concepts"]["real_split"]
FIGURES = "results/figures"


def figure_pair(stem, caption, category):
    """A figure's PNG (in `snakemake --report`, with its caption) and PDF."""
    return {"png": report(f"{stem}.png", caption=f"../report/{caption}.rst", category=category), "pdf": f"{stem}.pdf"}


rule figures_group:
    """One group's concept enrichment bars, cluster montage, embedding map, and a grid of each of its sets."""
    input:
        scores="results/concepts/spurious/{group}.parquet",
        clusters="results/concepts/clusters/{group}/clusters.parquet",
        assignments="results/concepts/clusters/{group}/assignments.parquet",
        embeddings="results/concepts/embeddings/groups/{group}.parquet",
        reference="results/concepts/embeddings/reference.parquet",
        members=group_members,
        **({"real": f"results/concepts/embeddings/world/{REAL_SPLIT}.parquet"} if REAL_SPLIT else {}),
    output:
        enrichment=report(f"{FIGURES}/groups/{{group}}/enrichment.png", caption="../report/enrichment.rst",
                          category="Concepts", subcategory="{group}"),
        enrichment_pdf=f"{FIGURES}/groups/{{group}}/enrichment.pdf",
        clusters=report(f"{FIGURES}/groups/{{group}}/clusters.png", caption="../report/clusters.rst",
                        category="Concepts", subcategory="{group}"),
        clusters_pdf=f"{FIGURES}/groups/{{group}}/clusters.pdf",
        embedding=report(f"{FIGURES}/groups/{{group}}/embedding.png", caption="../report/embedding.rst",
                         category="Concepts", subcategory="{group}"),
        embedding_pdf=f"{FIGURES}/groups/{{group}}/embedding.pdf",
        sets=report(directory(f"{FIGURES}/groups/{{group}}/sets"), patterns=["{set_id}.png"],
                    caption="../report/set_grid.rst", category="Invariant sets", subcategory="{group}"),
    params:
        set_dirs=group_set_dirs,
        group=lambda wildcards: GROUPS[wildcards.group],
        settings=REPORT,
    log:
        "logs/figures/groups/{group}.log",
    script:
        "../scripts/figures_group.py"


rule figures_samplers:
    """Sampler comparison (figure, LaTeX, Markdown) and acceptance vs diversity across guidance scales."""
    input:
        summaries=expand("results/sets/{set_id}/summary.parquet", set_id=SET_IDS),
    output:
        samplers=report(f"{FIGURES}/samplers.png", caption="../report/samplers.rst", category="Samplers"),
        samplers_pdf=f"{FIGURES}/samplers.pdf",
        latex=f"{FIGURES}/samplers.tex",
        markdown=f"{FIGURES}/samplers.md",
        guidance=report(f"{FIGURES}/guidance.png", caption="../report/guidance.rst", category="Samplers"),
        guidance_pdf=f"{FIGURES}/guidance.pdf",
    log:
        "logs/figures/samplers.log",
    script:
        "../scripts/figures_samplers.py"


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


rule figures_evaluation:
    """Precision, recall, F1, hit@1 and MRR of both methods."""
    input:
        rules.report_evaluation.output.summary,
    output:
        **figure_pair(f"{FIGURES}/evaluation", "evaluation", "Evaluation"),
    log:
        "logs/figures/evaluation.log",
    script:
        "../scripts/figures_evaluation.py"


FIGURE_FILES = [
    *expand(f"{FIGURES}/groups/{{group}}/{{name}}.{{fmt}}", group=GROUPS, name=GROUP_FIGURES, fmt=("png", "pdf")),
    *expand(f"{FIGURES}/groups/{{group}}/sets", group=GROUPS),
    *rules.figures_samplers.output,
    *(rules.figures_evaluation.output if REPORT["evaluate"] else []),
]


rule figures:
    """Every figure, redrawn from cached Parquet and PNG artifacts."""
    input:
        FIGURE_FILES,


rule report_html:
    """One self-contained HTML page and a Markdown summary of the run."""
    input:
        FIGURE_FILES,
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
        figures=FIGURES,
    log:
        "logs/report/html.log",
    script:
        "../scripts/report_build.py"
