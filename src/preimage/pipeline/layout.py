"""Where a run's concept tables and figures live under results/: one definition for the rules that write them, the
steps and the report."""

from __future__ import annotations

from collections.abc import Mapping

from preimage.analysis.concepts.groups import Group
from preimage.analysis.report.layout import GROUP_FIGURES, INTERVENTION_FIGURES, RUN_FIGURES, ReportFigures

FIGURES = "results/figures"
# the folders of every group's concept tables (one job writes them all): clusters/<group>/, spurious/<group>.parquet,
# maps/<group>.parquet
GROUP_TABLE_DIRS = {"clusters": "results/concepts/clusters", "scores": "results/concepts/spurious",
                    "maps": "results/concepts/maps"}
EVALUATION = "evaluation"
DIRECTIONS = "results/directions"
DIRECTION_FIGURES = ("grid", "flips")
# a global direction's files in its folder, by output name
DIRECTION_FILES = {"direction": "direction.npy", "trace": "trace.parquet", "heldout": "heldout.parquet",
                   "summary": "summary.parquet", "concepts": "concepts.parquet", "search": "search.json",
                   "originals": "originals.npy", "reconstructed": "reconstructed.npy", "edited": "edited.npy"}


def group_tables(group: str, dirs: Mapping[str, str] = GROUP_TABLE_DIRS) -> dict[str, str]:
    """A group's concept tables by name (assignments, clusters, scores, map) in the folders `dirs` (by
    GROUP_TABLE_DIRS' names); `group` is a slug."""
    return {"assignments": f"{dirs['clusters']}/{group}/assignments.parquet",
            "clusters": f"{dirs['clusters']}/{group}/clusters.parquet",
            "scores": f"{dirs['scores']}/{group}.parquet",
            "map": f"{dirs['maps']}/{group}.parquet"}


def group_figure_stems(group: str) -> dict[str, str]:
    """A group's figure paths without suffix, by figure name; `group` is a slug or the wildcard "{group}"."""
    return {name: f"{FIGURES}/groups/{group}/{name}" for name in GROUP_FIGURES}


def set_figure_dir(group: str) -> str:
    """The folder of a group's set grids, one `<set id>.png` each."""
    return f"{FIGURES}/groups/{group}/sets"


def run_figure_stems(evaluate: bool) -> dict[str, str]:
    """The run's figure paths without suffix, by name; the evaluation figure only when `evaluate`."""
    return {name: f"{FIGURES}/{name}" for name in RUN_FIGURES if evaluate or name != EVALUATION}


def intervention_figure_stems() -> dict[str, str]:
    """The concept interventions' figure paths without suffix, by name."""
    return {name: f"{FIGURES}/interventions/{name}" for name in INTERVENTION_FIGURES}


def report_figures(groups: Mapping[str, Group], evaluate: bool, interventions: bool) -> ReportFigures:
    """The PNG files the report shows for these groups (and the interventions' figures where they run)."""
    return ReportFigures(
        groups={slug: {name: f"{stem}.png" for name, stem in group_figure_stems(slug).items()} for slug in groups},
        sets={slug: {s: f"{set_figure_dir(slug)}/{s}.png" for s in group.set_ids} for slug, group in groups.items()},
        run={name: f"{stem}.png" for name, stem in run_figure_stems(evaluate).items()},
        interventions={name: f"{stem}.png" for name, stem in intervention_figure_stems().items()} if interventions else {},
    )


def direction_dir(target: str) -> str:
    """The folder of a target's global direction; `target` is a class name or the wildcard "{target}"."""
    return f"{DIRECTIONS}/{target}"


def direction_files(target: str) -> dict[str, str]:
    """A global direction's files by output name (DIRECTION_FILES) in its folder."""
    return {name: f"{direction_dir(target)}/{file}" for name, file in DIRECTION_FILES.items()}


def direction_figure_stems(target: str) -> dict[str, str]:
    """A global direction's figure paths without suffix, by figure name."""
    return {name: f"{FIGURES}/directions/{target}/{name}" for name in DIRECTION_FIGURES}
