# Input and output helpers shared by the rule files, kept apart from the rules (snakemake --lint) so that
# each rule file reads as its steps. They look globals up when called. GROUPS and FIGURES come from
# rules/concepts.smk and rules/report.smk, the training outputs from rules/training.smk.

from preimage.registry import model_settings
from preimage.report.build import GROUP_FIGURES


def world_models(*kinds):
    """Training outputs of the world models a rule loads; none for real models, which are read as they are."""
    outputs = {
        "classifier": rules.train_classifier.output.weights,
        "prior": PRIOR_UNET,
        "clip": rules.train_clip.output.weights,
    }
    return {kind: outputs[kind] for kind in kinds if model_settings(config, kind)["source"] == "world"}


def group_set_dirs(wildcards):
    return [f"results/sets/{s}" for s in GROUPS[wildcards.group].set_ids]


def group_members(wildcards):
    return [f"results/sets/{s}/members.parquet" for s in GROUPS[wildcards.group].set_ids]


def figure_pair(name, stem, caption, category, subcategory=None):
    """A figure's PNG (in `snakemake --report`, with its caption) and PDF, as outputs `name` and `name`_pdf."""
    png = report(f"{stem}.png", caption=f"../report/{caption}.rst", category=category, subcategory=subcategory)
    return {name: png, f"{name}_pdf": f"{stem}.pdf"}


def group_figures(group):
    """A group's enrichment bars, cluster montage, embedding map and folder of set grids, as outputs named
    <figure> (and <figure>_pdf) and `sets`; `group` may be the wildcard "{group}"."""
    stem = f"{FIGURES}/groups/{group}"
    figures = {}
    for name in GROUP_FIGURES:
        figures.update(figure_pair(name, f"{stem}/{name}", name, "Concepts", group))
    figures["sets"] = report(directory(f"{stem}/sets"), patterns=["{set_id}.png"], caption="../report/set_grid.rst",
                             category="Invariant sets", subcategory=group)
    return figures
