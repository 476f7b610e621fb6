"""Make a run's figures and report from cached artifacts only (Parquet tables and PNGs), never a model.

Each function takes file paths, so a Snakemake script is one call and a notebook can call the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from preimage.concepts.clustering import GROUP_SCOPE
from preimage.concepts.embeddings import MEMBERS_FILE, SOURCE_IMAGE, embedding_matrix, generated_members
from preimage.concepts.layout import Group
from preimage.io import atomic_path
from preimage.report.document import GroupSection, Report, write_report
from preimage.report.evaluation import winner
from preimage.report.figures import (
    cluster_montage_figure,
    embedding_map_figure,
    enrichment_figure,
    evaluation_figure,
    guidance_figure,
    read_png,
    read_pngs,
    sampler_figure,
    set_grid_figure,
)
from preimage.report.style import save_figure
from preimage.report.tables import sampler_table, to_latex, to_markdown


def write_set_figure(set_dir: str | Path, stem: str | Path, shown: int, columns: int) -> None:
    """Grid of a set's first `shown` accepted members beside its source."""
    set_dir = Path(set_dir)
    members = pd.read_parquet(set_dir / MEMBERS_FILE)
    accepted = members[members["accepted"]].head(shown)
    source = read_png(set_dir / SOURCE_IMAGE) if (set_dir / SOURCE_IMAGE).is_file() else None
    title = f"{members['set_id'].iloc[0]}: {len(accepted)} of {int(members['accepted'].sum())} accepted members"
    images = read_pngs([set_dir / p for p in accepted["image"]])[: len(accepted)]
    save_figure(set_grid_figure(source, images, title, columns), stem)


GROUP_FIGURES = ("enrichment", "clusters", "embedding")


@dataclass(frozen=True)
class FigureSettings:
    """Figure knobs; the matching keys of config report map onto these fields."""

    top_concepts: int = 15
    map_points: int = 1000
    grid_members: int = 32
    grid_columns: int = 8
    seed: int = 0

    @classmethod
    def from_config(cls, section: Mapping) -> FigureSettings:
        return cls(**{key: section[key] for key in cls.__dataclass_fields__ if key in section})


def write_group_figures(scores: str | Path, clusters: str | Path, assignments: str | Path, embeddings: str | Path,
                        reference: str | Path, set_dirs: Sequence[str | Path], group: Group,
                        stems: Mapping[str, str | Path], sets_dir: str | Path,
                        settings: FigureSettings = FigureSettings(), real: str | Path | None = None) -> None:
    """One group's figures: stems "enrichment", "clusters", "embedding", and `sets_dir`/<set id> grids.

    `real` is an embedding table of real images with a `shape` column (a world split); those of the
    group's core class are drawn on the embedding map.
    """
    title = group.name
    save_figure(enrichment_figure(pd.read_parquet(scores), f"{title}: concepts the decision depends on",
                                  settings.top_concepts), stems["enrichment"])
    table = pd.read_parquet(clusters)
    group_clusters = table[table["scope"] == GROUP_SCOPE]
    save_figure(cluster_montage_figure(group_clusters, f"{title}: clusters"), stems["clusters"])
    labels = pd.read_parquet(assignments).query("scope == @GROUP_SCOPE")[["set_id", "image", "cluster"]]
    pool = generated_members(pd.read_parquet(embeddings)).merge(labels, on=["set_id", "image"], validate="1:1")
    rng = np.random.default_rng(settings.seed)
    pool = pool.iloc[np.sort(rng.permutation(len(pool))[: settings.map_points])]
    ref = generated_members(pd.read_parquet(reference))
    ref = ref.iloc[np.sort(rng.permutation(len(ref))[: settings.map_points])]
    names = dict(zip(group_clusters["cluster"], group_clusters["name"]))
    real_images = None
    if real is not None and group.core is not None:
        rows = pd.read_parquet(real).query("shape == @group.core")
        if len(rows):
            real_images = embedding_matrix(rows.iloc[np.sort(rng.permutation(len(rows))[: settings.map_points])])
    save_figure(embedding_map_figure(embedding_matrix(pool), pool["cluster"].to_numpy(), names, embedding_matrix(ref),
                                     f"{title}: CLIP embeddings (t-SNE)", settings.seed, real_images),
                stems["embedding"])
    for set_dir in set_dirs:
        write_set_figure(set_dir, Path(sets_dir) / Path(set_dir).name, settings.grid_members, settings.grid_columns)


def read_summaries(paths: Sequence[str | Path]) -> pd.DataFrame:
    """All set summaries as one table."""
    if not paths:
        raise ValueError("no set summaries given")
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def write_sampler_outputs(summaries: pd.DataFrame, figure_stem: str | Path, latex: str | Path, markdown: str | Path,
                          guidance_stem: str | Path) -> None:
    """Sampler comparison as figure, LaTeX and Markdown, and acceptance vs diversity over guidance scales."""
    table = sampler_table(summaries)
    save_figure(sampler_figure(table), figure_stem)
    for path, text in ((latex, to_latex(table)), (markdown, to_markdown(table))):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    save_figure(guidance_figure(summaries), guidance_stem)


def write_evaluation_figure(evaluation: str | Path, stem: str | Path) -> None:
    save_figure(evaluation_figure(pd.read_parquet(evaluation)), stem)


def build_report(
    title: str,
    groups: Mapping[str, Group],
    summaries: Sequence[str | Path],
    spurious: str | Path,
    clusters: Mapping[str, str | Path],
    figure_dir: str | Path,
    html: str | Path,
    markdown: str | Path,
    evaluation: tuple[str | Path, str | Path] | None = None,
) -> Report:
    """Assemble and write the run report. Figures are looked up under `figure_dir` by the layout of
    rules/report.smk: groups/<slug>/{enrichment,clusters,embedding}.png, groups/<slug>/sets/<set id>.png,
    samplers.png, guidance.png, evaluation.png."""
    figure_dir = Path(figure_dir)
    scores = pd.read_parquet(spurious)
    sections = [
        GroupSection(
            group=group.name, core=group.core, set_ids=list(group.set_ids),
            scores=scores[scores["group"] == group.name].reset_index(drop=True),
            clusters=pd.read_parquet(clusters[slug]),
            figures={name: figure_dir / "groups" / slug / f"{name}.png" for name in GROUP_FIGURES},
            set_figures={s: figure_dir / "groups" / slug / "sets" / f"{s}.png" for s in group.set_ids},
        )
        for slug, group in groups.items()
    ]
    report = Report(title=title, groups=sections, summaries=read_summaries(summaries),
                    figures={name: figure_dir / f"{name}.png" for name in ("samplers", "guidance")})
    report.samplers = sampler_table(report.summaries)
    if evaluation is not None:
        report.evaluation, report.evaluation_pairs = (pd.read_parquet(p) for p in evaluation)
        report.winner = winner(report.evaluation)
        report.figures["evaluation"] = figure_dir / "evaluation.png"
    write_report(report, html, markdown)
    return report
