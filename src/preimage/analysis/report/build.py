"""Make a run's figures and report from cached artifacts only (Parquet tables and PNGs), never a model.

Each function takes file paths, so a Snakemake script is one call and a notebook can call the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from preimage.analysis.concepts.groups import GROUP_SCOPE, Group
from preimage.analysis.report.directions import DirectionSection
from preimage.analysis.report.document import GroupSection, Report, write_report
from preimage.analysis.report.figures import (
    cluster_montage_figure,
    embedding_map_figure,
    enrichment_figure,
    evaluation_figure,
    guidance_figure,
    read_png,
    read_pngs,
    sampler_figure,
    set_grid_image,
)
from preimage.analysis.report.layout import ReportFigures
from preimage.analysis.report.style import save_figure
from preimage.analysis.report.tables import sampler_table, to_latex, to_markdown, winner
from preimage.engine.set_files import MEMBERS_FILE, SOURCE_FILE
from preimage.utils.io import atomic_path, write_png


def write_set_figure(set_dir: str | Path, stem: str | Path, shown: int, columns: int) -> Path:
    """Grid of a set's first `shown` accepted members beside its source, as `stem`.png only: the grid is a raster
    montage, which a PDF would only wrap."""
    set_dir = Path(set_dir)
    members = pd.read_parquet(set_dir / MEMBERS_FILE)
    accepted = members[members["accepted"]].head(shown)
    source = read_png(set_dir / SOURCE_FILE) if (set_dir / SOURCE_FILE).is_file() else None
    title = f"{members['set_id'].iloc[0]}: {len(accepted)} of {int(members['accepted'].sum())} accepted members"
    images = read_pngs([set_dir / p for p in accepted["image"]])[: len(accepted)]
    stem = Path(stem)
    path = stem if stem.suffix == ".png" else stem.with_name(f"{stem.name}.png")  # a set id may hold dots
    write_png(set_grid_image(source, images, title, columns), path)
    return path


@dataclass(frozen=True)
class FigureSettings:
    """Figure knobs; the matching keys of config report map onto these fields."""

    top_concepts: int = 15
    grid_members: int = 32
    grid_columns: int = 8

    @classmethod
    def from_config(cls, section: Mapping) -> FigureSettings:
        return cls(**{key: section[key] for key in cls.__dataclass_fields__ if key in section})


def write_group_figures(scores: str | Path, clusters: str | Path, embedding_map: str | Path,
                        set_dirs: Sequence[str | Path], group: Group, stems: Mapping[str, str | Path],
                        sets_dir: str | Path, settings: FigureSettings = FigureSettings()) -> None:
    """One group's figures: stems "enrichment" (its rows of the run's `scores` table), "clusters", "embedding"
    (from the group's map table, `preimage.analysis.concepts.maps`), and `sets_dir`/<set id> grids."""
    title = group.name
    every_group = pd.read_parquet(scores)
    save_figure(enrichment_figure(every_group[every_group["group"] == group.name],
                                  f"{title}: concepts the decision depends on", settings.top_concepts),
                stems["enrichment"])
    table = pd.read_parquet(clusters)
    group_clusters = table[table["scope"] == GROUP_SCOPE]
    save_figure(cluster_montage_figure(group_clusters, f"{title}: clusters"), stems["clusters"])
    names = dict(zip(group_clusters["cluster"], group_clusters["name"]))
    save_figure(embedding_map_figure(pd.read_parquet(embedding_map), names, f"{title}: CLIP embeddings (t-SNE)"),
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


def write_run_figures(summaries: Sequence[str | Path], stems: Mapping[str, str | Path], latex: str | Path,
                      markdown: str | Path, evaluation: str | Path | None = None) -> None:
    """The run's figures at `stems` ("samplers", "guidance", and "evaluation" when `evaluation`, the Parquet
    summary of a ground-truth evaluation, is given) and the sampler table as LaTeX and Markdown."""
    write_sampler_outputs(read_summaries(summaries), stems["samplers"], latex, markdown, stems["guidance"])
    if evaluation is not None:
        write_evaluation_figure(evaluation, stems["evaluation"])


def build_report(
    title: str,
    groups: Mapping[str, Group],
    summaries: Sequence[str | Path],
    spurious: str | Path,
    clusters: Mapping[str, str | Path],
    figures: ReportFigures,
    html: str | Path,
    markdown: str | Path,
    evaluation: tuple[str | Path, str | Path] | None = None,
    source_calls: str | Path | None = None,
    directions: Sequence[DirectionSection] = (),
    effects: str | Path | None = None,
) -> Report:
    """Assemble and write the run report from its tables and the PNG figures named in `figures`;
    `source_calls` (source_id, source_class, model_class per call-keeping set) lists misclassified sources;
    `effects` holds the concept interventions' findings."""
    scores = pd.read_parquet(spurious)
    sections = [
        GroupSection(
            group=group.name, core=group.core, set_ids=list(group.set_ids), kind=group.kind,
            scores=scores[scores["group"] == group.name].reset_index(drop=True),
            clusters=pd.read_parquet(clusters[slug]),
            figures={name: Path(path) for name, path in figures.groups[slug].items()},
            set_figures={s: Path(path) for s, path in figures.sets[slug].items()},
        )
        for slug, group in groups.items()
    ]
    report = Report(title=title, groups=sections, summaries=read_summaries(summaries),
                    figures={name: Path(path) for name, path in figures.run.items()})
    report.samplers = sampler_table(report.summaries)
    if evaluation is not None:
        report.evaluation, report.evaluation_pairs = (pd.read_parquet(p) for p in evaluation)
        report.winner = winner(report.evaluation)
    if effects is not None:
        report.findings = pd.read_parquet(effects)
        report.intervention_figures = {name: Path(path) for name, path in figures.interventions.items()}
    if source_calls is not None:
        report.misclassified = misclassified_sources(pd.read_parquet(source_calls))
    report.directions = list(directions)
    write_report(report, html, markdown)
    return report


def misclassified_sources(calls: pd.DataFrame) -> pd.DataFrame:
    """One row per source whose model call differs from its label."""
    wrong = calls[calls["source_class"] != calls["model_class"]]
    columns = ["source_id", "source_class", "model_class"]
    return wrong[columns].drop_duplicates().sort_values("source_id").reset_index(drop=True)
