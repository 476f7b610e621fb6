"""The figures a report shows: each concept group's and the run's, by name, and the files that hold them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

GROUP_FIGURES = ("enrichment", "clusters", "embedding")
RUN_FIGURES = ("samplers", "guidance", "evaluation")  # evaluation only where a ground truth is known
INTERVENTION_FIGURES = ("effects", "pairs")  # only where concept interventions run


@dataclass(frozen=True)
class ReportFigures:
    """The PNG files a report shows: per group slug its figures by name and its set grids by set id, the run's
    figures by name, and the concept interventions' figures by name."""

    groups: Mapping[str, Mapping[str, str | Path]]
    sets: Mapping[str, Mapping[str, str | Path]]
    run: Mapping[str, str | Path]
    interventions: Mapping[str, str | Path] = field(default_factory=dict)
