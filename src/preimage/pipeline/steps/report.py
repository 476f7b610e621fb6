"""Steps that score the flags against the world's ground truth and draw the run's figures and report, from
cached artifacts only.

Matplotlib (the figures) and the evaluation's scikit-learn are imported inside the steps that use them:
every Snakemake job is a new process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from preimage.analysis.report.layout import GROUP_FIGURES
from preimage.analysis.report.tables import winner
from preimage.utils.io import write_parquet

if TYPE_CHECKING:
    from preimage.analysis.concepts.groups import Group
    from preimage.analysis.report.layout import ReportFigures


def evaluate_flags(spurious: str | PathLike, ground_truth: str | PathLike, baseline: str | PathLike | None,
                   summary: str | PathLike, pairs: str | PathLike, classifier_metrics: str | PathLike | None,
                   regressor_metrics: str | PathLike | None, min_drop: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the invariant-set method's flags (the `spurious` table) and, when given, the data-only
    `baseline`'s against the world's planted shortcuts (evaluation only): a summary per method and its
    (class, concept) pairs, as Parquet. A planted shortcut counts only when the world model's training metrics
    (`classifier_metrics`, `regressor_metrics`: their metrics.json, None for a model that is not the world's)
    show a drop of at least `min_drop` points on the shortcut-broken split (`report.learned_drop_points`)."""
    from preimage.world.evaluation import evaluate, learned_shortcuts

    methods = {"invariant sets": pd.read_parquet(spurious)}
    if baseline is not None:
        methods["baseline (misclassified real images)"] = pd.read_parquet(baseline)
    metrics = [None if path is None else json.loads(Path(path).read_text()) for path in (classifier_metrics, regressor_metrics)]
    truth = learned_shortcuts(pd.read_parquet(ground_truth), *metrics, min_drop=min_drop)
    scored, scored_pairs = evaluate(methods, truth)
    write_parquet(scored, summary)
    write_parquet(scored_pairs, pairs)
    print(truth.to_string(), f"\n(learned: a drop of at least {min_drop:g} points)\n")
    print(scored.to_string(), f"\nwinner: {winner(scored)}")
    return scored, scored_pairs


def draw_group_figures(scores: str | PathLike, clusters: str | PathLike, embedding_map: str | PathLike,
                       set_dirs: Sequence[str | PathLike], group: Group, figures: Mapping[str, str | PathLike],
                       sets: str | PathLike, settings: Mapping) -> None:
    """One concept group's figures from its cached tables: the stems of "enrichment", "clusters" and
    "embedding" are read from `figures` (by name; other keys are ignored), and a PNG grid of each set of
    `set_dirs` goes to the folder `sets`. `settings`: the config's report section (top_concepts,
    grid_members, grid_columns)."""
    from preimage.analysis.report.build import FigureSettings, write_group_figures

    write_group_figures(scores, clusters, embedding_map, set_dirs, group,
                        {name: figures[name] for name in GROUP_FIGURES}, sets, FigureSettings.from_config(settings))


def draw_run_figures(summaries: Sequence[str | PathLike], stems: Mapping[str, str | PathLike], latex: str | PathLike,
                     markdown: str | PathLike, evaluation: str | PathLike | None) -> None:
    """The run's figures from the set summaries at `stems` (samplers, guidance and, with the `evaluation`
    summary, evaluation), and the sampler table as LaTeX and Markdown."""
    from preimage.analysis.report.build import write_run_figures

    write_run_figures(summaries, stems, latex, markdown, evaluation)


def write_report(title: str, groups: Mapping[str, Group], summaries: Sequence[str | PathLike],
                 spurious: str | PathLike, clusters: Sequence[str | PathLike], figures: ReportFigures,
                 html: str | PathLike, markdown: str | PathLike, evaluation: Sequence[str | PathLike],
                 source_calls: str | PathLike) -> None:
    """Write the run's self-contained HTML report and its Markdown summary. `clusters` holds one clusters
    table per group, in the order of `groups`; `evaluation` is the (summary, pairs) of a ground-truth
    evaluation, or empty for none; `source_calls` the model's call on each source (misclassified ones listed)."""
    from preimage.analysis.report.build import build_report

    build_report(title, groups, summaries, spurious, dict(zip(groups, clusters)), figures, html, markdown,
                 tuple(evaluation) or None, source_calls)
