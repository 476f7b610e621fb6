"""The many-world benchmark's table and figure, from each drawn world's evaluation (evaluation only).

Each world's run scores both methods against its planted shortcuts (`preimage.world.evaluation`:
`results/report/evaluation.parquet` in its folder). The table has one row per world and method, and one per method
over all worlds (`ALL`): precision, recall, F1 and hit@1 averaged over the worlds (hit@1 over those with a learned
shortcut, where it is defined), counts summed, wall time summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from preimage.analysis.report.style import apply_style

ALL = "all worlds"
RATES = ["precision", "recall", "f1", "hit_at_1"]
COUNTS = ["planted", "not_learned", "flagged", "true_flags", "false_flags"]
COLUMNS = ["world", "shortcuts", "method", *RATES, *COUNTS, "seconds", "planted_shortcuts"]


@dataclass(frozen=True)
class WorldResult:
    """One drawn world's outcome: its name, its planted shortcuts described (with what the classifier learned),
    how many it planted, its evaluation summary (one row per method) and the wall time of its run."""

    name: str
    description: str
    shortcuts: int
    summary: pd.DataFrame
    seconds: float


def world_rows(result: WorldResult) -> pd.DataFrame:
    """The evaluation summary of one world, one row per method, in the table's columns."""
    missing = sorted(set(RATES + COUNTS + ["method"]) - set(result.summary.columns))
    if missing:
        raise ValueError(f"{result.name}: the evaluation summary lacks column(s) {missing}")
    rows = result.summary[["method", *RATES, *COUNTS]].copy()
    return rows.assign(world=result.name, shortcuts=result.shortcuts, seconds=result.seconds,
                       planted_shortcuts=result.description)[COLUMNS]


def totals(per_world: pd.DataFrame) -> pd.DataFrame:
    """One row per method over every world: rates averaged over the worlds (NaN hit@1 skipped), counts summed."""
    grouped = per_world.groupby("method", sort=False)
    rows = grouped[RATES].mean().join(grouped[[*COUNTS, "shortcuts", "seconds"]].sum()).reset_index()
    return rows.assign(world=ALL, planted_shortcuts=f"{per_world['world'].nunique()} worlds")[COLUMNS]


def benchmark_table(results: Sequence[WorldResult]) -> pd.DataFrame:
    """Every world's rows, then the totals (see the module)."""
    if not results:
        raise ValueError("benchmark_worlds.worlds: no world to tabulate")
    per_world = pd.concat([world_rows(r) for r in results], ignore_index=True)
    return pd.concat([per_world, totals(per_world)], ignore_index=True)


def benchmark_figure(table: pd.DataFrame, title: str) -> plt.Figure:
    """F1 and false flags of each method on each world (bars; each world labelled with its planted shortcuts and
    how many of them the classifier learned), with the mean F1 over the worlds in the legend."""
    apply_style()
    per_world = table[table["world"] != ALL]
    means = table[table["world"] == ALL].set_index("method")["f1"]
    shown = per_world.assign(method=[f"{m} (mean F1 {means[m]:.2f})" for m in per_world["method"]],
                             label=[f"{w}\n{n} planted, {k} learned" for w, n, k in
                                    zip(per_world["world"], per_world["shortcuts"], per_world["planted"])])
    figure, axes = plt.subplots(2, 1, figsize=(max(5.0, 1.1 * per_world["world"].nunique() + 2), 5.5), sharex=True)
    sns.barplot(data=shown, x="label", y="f1", hue="method", ax=axes[0])
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("F1")
    sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.01, 1), title="method")
    sns.barplot(data=shown, x="label", y="false_flags", hue="method", ax=axes[1], legend=False)
    axes[1].set_ylabel("false flags")
    axes[1].set_xlabel("")
    figure.suptitle(title)
    return figure
