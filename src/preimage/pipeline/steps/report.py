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

import numpy as np
import pandas as pd

from preimage.analysis.report.layout import GROUP_FIGURES
from preimage.analysis.report.tables import winner
from preimage.pipeline.layout import direction_dir, direction_figure_stems
from preimage.utils.io import write_parquet

if TYPE_CHECKING:
    from preimage.analysis.concepts.groups import Group
    from preimage.analysis.report.directions import DirectionSection
    from preimage.analysis.report.layout import ReportFigures


def evaluate_flags(spurious: str | PathLike, ground_truth: str | PathLike, baseline: str | PathLike | None,
                   effects: str | PathLike | None, summary: str | PathLike, pairs: str | PathLike,
                   classifier_metrics: str | PathLike | None, regressor_metrics: str | PathLike | None,
                   min_drop: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the invariant-set method's flags (the `spurious` table) and, when given, the findings of concept
    interventions (`effects`) and the data-only `baseline`'s flags against the world's planted shortcuts
    (evaluation only): a summary per method and its (class, concept) pairs, as Parquet. A planted shortcut counts
    only when the world model's training metrics (`classifier_metrics`, `regressor_metrics`: their metrics.json,
    None for a model that is not the world's) show a drop of at least `min_drop` points on the shortcut-broken
    split (`report.learned_drop_points`)."""
    from preimage.analysis.concepts.effects import as_scores
    from preimage.world.evaluation import evaluate, learned_shortcuts

    methods = {"invariant sets": pd.read_parquet(spurious)}
    if effects is not None:
        methods["concept interventions"] = as_scores(pd.read_parquet(effects))
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


def draw_intervention_figures(effects: str | PathLike, edits: str | PathLike, images: str | PathLike,
                              stems: Mapping[str, str | PathLike], min_effect: float) -> None:
    """The concept interventions' figures: every effect with its interval (`stems["effects"]`) and edited pairs of
    each finding (`stems["pairs"]`), from the effects and intervention tables and the edited images."""
    from preimage.analysis.report.figures import effects_figure, intervention_pairs_figure
    from preimage.analysis.report.style import save_figure

    findings, table = pd.read_parquet(effects), pd.read_parquet(edits)
    save_figure(effects_figure(findings, min_effect), stems["effects"])
    concepts = list(dict.fromkeys(table["concept"]))
    save_figure(intervention_pairs_figure(findings, table, np.load(images), concepts), stems["pairs"])


def draw_direction_figures(target: str, heldout: str | PathLike, summary: str | PathLike, originals: str | PathLike,
                           edited: str | PathLike, stems: Mapping[str, str | PathLike]) -> None:
    """The direction's figures at `stems`: "grid" (held-out images before and after the edit, by source class)
    and "flips" (flip rate per source class, beside the reconstruction's)."""
    from preimage.analysis.report.directions import direction_grid_figure, flip_rate_figure
    from preimage.analysis.report.style import save_figure

    held = pd.read_parquet(heldout)
    save_figure(direction_grid_figure(np.load(originals), np.load(edited), held["class_name"].to_numpy(), target),
                stems["grid"])
    save_figure(flip_rate_figure(pd.read_parquet(summary)), stems["flips"])


def draw_run_figures(summaries: Sequence[str | PathLike], stems: Mapping[str, str | PathLike], latex: str | PathLike,
                     markdown: str | PathLike, evaluation: str | PathLike | None) -> None:
    """The run's figures from the set summaries at `stems` (samplers, guidance and, with the `evaluation`
    summary, evaluation), and the sampler table as LaTeX and Markdown."""
    from preimage.analysis.report.build import write_run_figures

    write_run_figures(summaries, stems, latex, markdown, evaluation)


def write_report(title: str, groups: Mapping[str, Group], summaries: Sequence[str | PathLike],
                 spurious: str | PathLike, clusters: Sequence[str | PathLike], figures: ReportFigures,
                 html: str | PathLike, markdown: str | PathLike, evaluation: Sequence[str | PathLike],
                 source_calls: str | PathLike, directions: Sequence[str] = (),
                 effects: str | PathLike | None = None) -> None:
    """Write the run's self-contained HTML report and its Markdown summary. `clusters` holds one clusters
    table per group, in the order of `groups`; `evaluation` is the (summary, pairs) of a ground-truth
    evaluation, or empty for none (then the global `directions` are shown without the oracle's reading);
    `source_calls` the model's call on each source (misclassified ones listed); `directions` the target classes
    of the global directions under results/directions/; `effects` the concept interventions' findings, or None
    where they did not run."""
    from preimage.analysis.report.build import build_report

    build_report(title, groups, summaries, spurious, dict(zip(groups, clusters)), figures, html, markdown,
                 tuple(evaluation) or None, source_calls, direction_sections(directions, bool(evaluation)), effects)


def direction_sections(targets: Sequence[str], evaluated: bool) -> list[DirectionSection]:
    """The report sections of the global directions towards `targets`, read from their folders and figures; with
    `evaluated`, the oracle's reading too."""
    from preimage.analysis.report.directions import DirectionSection

    return [DirectionSection.read(direction_dir(target),
                                  {name: f"{stem}.png" for name, stem in direction_figure_stems(target).items()},
                                  evaluated) for target in targets]
