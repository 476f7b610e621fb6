"""The run report: one self-contained HTML page (every image inlined as base64) and a Markdown summary.

Both are rendered from a `Report`, which holds only cached artifacts (tables and PNG paths), so a report
is rebuilt without touching a model. Per group (a class, or a neuron objective): the ranked concept table
with evidence images and flags, the clusters with their names, the invariant-set grids and the set
metrics; then the sampler comparison and, for the world, the scores against the planted shortcuts.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markupsafe
import numpy as np
import pandas as pd
from PIL import Image

from preimage.analysis.concepts.groups import MOVED_DOWN, MOVED_UP, contrast_kind
from preimage.analysis.report.directions import DirectionSection, directions_html, directions_markdown
from preimage.analysis.report.figures import read_pngs
from preimage.analysis.report.tables import to_markdown
from preimage.utils.io import atomic_path, image_grid

TOP_CONCEPTS = 10
SET_COLUMNS = ["set_id", "source_id", "sampler", "members", "accepted", "acceptance_rate", "diversity",
               "mean_lpips_to_source", "seconds"]


@dataclass
class GroupSection:
    """Everything the report shows for one group of invariant sets."""

    group: str
    core: str | None
    set_ids: list[str]
    scores: pd.DataFrame
    """The group's rows of the spurious-feature table (one per concept)."""
    clusters: pd.DataFrame
    """The group's cluster table (scope "group" and one scope per set)."""
    figures: dict[str, Path] = field(default_factory=dict)
    """PNG paths: "enrichment", "embedding", "clusters"."""
    set_figures: dict[str, Path] = field(default_factory=dict)
    kind: str = "class"
    """The group's kind (`preimage.analysis.concepts.groups`): "class", "objective", "moved up" or "moved down"."""

    @property
    def compared_with(self) -> str:
        """What the group's members were scored against: the reference, or the other direction's members."""
        other = contrast_kind(self.kind)
        return f"members of the {other} groups" if other else "reference samples"

    @property
    def note(self) -> str:
        """A heading's note: the class a group keeps, or what a regression counterfactual's flags mean."""
        if self.core:
            return f"keeps class {self.core}"
        if self.kind in (MOVED_UP, MOVED_DOWN):
            return f"regression output {self.kind}: what it adds over moving it the other way"
        return ""
    """PNG path of each set's grid, by set id."""


@dataclass
class Report:
    """A run's cached results, as the report renders them."""

    title: str
    groups: list[GroupSection]
    summaries: pd.DataFrame
    samplers: pd.DataFrame | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    """Run-wide PNG paths: "guidance", "samplers", "evaluation"."""
    evaluation: pd.DataFrame | None = None
    evaluation_pairs: pd.DataFrame | None = None
    winner: str | None = None
    misclassified: pd.DataFrame | None = None
    """Sources the model calls another class than their label (source_id, source_class, model_class): their
    call-keeping sets explain the class the model sees."""
    findings: pd.DataFrame | None = None
    """Concept interventions' effects with their verdicts (`preimage.analysis.concepts.effects.findings`)."""
    intervention_figures: dict[str, Path] = field(default_factory=dict)
    """PNG paths: "effects", "pairs"."""
    directions: list[DirectionSection] = field(default_factory=list)
    """The run's global counterfactual directions, one per target class."""


def png_data_uri(path: str | Path) -> str:
    """A file's bytes as a data: URI, so the page carries its images."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def strip_data_uri(paths: list[str]) -> str:
    """Evidence images side by side, as one inlined PNG; empty when there is no evidence."""
    if not paths:
        return ""
    buffer = io.BytesIO()
    Image.fromarray(image_grid(read_pngs(paths), len(paths))).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _concept_rows(scores: pd.DataFrame, top: int) -> list[dict]:
    shown = scores[scores["rank"] > 0].sort_values("rank").head(top)
    return [{**row, "strip": strip_data_uri(list(row["evidence"]))} for row in shown.to_dict("records")]


def _fmt(value: object, digits: int = 3) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _set_table(summaries: pd.DataFrame, set_ids: list[str]) -> pd.DataFrame:
    rows = summaries[summaries["set_id"].isin(set_ids)]
    return rows[[c for c in SET_COLUMNS if c in rows.columns]].reset_index(drop=True)


TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ report.title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; }
img.figure { max-width: 100%; }
img.pixels { image-rendering: pixelated; height: 48px; }
tr.flagged td { background: #fdecea; font-weight: 600; }
.note { color: #666; font-size: 0.9em; }
</style></head><body>
<h1>{{ report.title }}</h1>
<p class="note">Groups: {{ report.groups | length }} · sets: {{ report.summaries | length }}.
A concept is <b>flagged</b> when its score beats the permutation-null threshold and the minimum effect and, for a
class, the model's own calls on the reference confirm it (decision effect at least the minimum effect, and among
reference images CLIP sees alike, the model calls the class more often on those showing the concept by at least the
minimum call rate: the column "calls"); for a regression output moved up or down, the regressor's outputs on the
reference confirm it the same way, an image counting as called when its output lies beyond the reference's median in
that direction. A class's
concept that is only the <b>mirror</b> image of another class's finding (no longer flagged among images without that
finding's concept, while the finding still is among images without it) is listed as its mirror instead of flagged.</p>
{% if report.evaluation is not none %}
<h2>Against the planted shortcuts</h2>
{{ table(report.evaluation) }}
{% if report.winner %}<p>Best method by F1 (then mean reciprocal rank): <b>{{ report.winner }}</b>.</p>{% endif %}
{% if report.evaluation_pairs is not none %}{{ table(report.evaluation_pairs) }}{% endif %}
{% if "evaluation" in report.figures %}<img class="figure" src="{{ uri(report.figures["evaluation"]) }}" alt="evaluation">{% endif %}
{% endif %}
{% if report.findings is not none %}
<h2>Findings from concept interventions</h2>
<p class="note">Each tested concept was edited into (or out of) reference images and the model's response compared
with unguided twins of the same edits: the effect is the mean change with the concept minus without it, with a
bootstrap interval. A <b>finding</b> is an effect whose interval clears the minimum effect; a <b>mirror</b> is a
concept whose presence pushes away from a readout that has a finding (it looks enriched because its opposite is
the shortcut).</p>
{{ table(findings_table(report.findings)) }}
{% for name, path in report.intervention_figures.items() %}
<img class="figure" src="{{ uri(path) }}" alt="{{ name }}">
{% endfor %}
{% endif %}
{% if report.misclassified is not none and report.misclassified | length %}
<h2>Sources the model misclassifies</h2>
<p class="note">Their label, logit and probability sets keep the model's call, so they are explained in the group
of the class the model assigns them, not their own.</p>
{{ table(report.misclassified) }}
{% endif %}
{{ directions() }}
{% for section in report.groups %}
<h2 id="{{ section.group }}">{{ section.group }}{% if section.note %} <span class="note">({{ section.note }})</span>{% endif %}</h2>
<h3>Concepts the decision depends on</h3>
<table><tr><th>rank</th><th>concept</th><th>score</th><th>enrichment</th><th>reliance</th><th>decision</th><th>calls</th><th>sets</th><th>flag</th><th>evidence</th></tr>
{% for row in concepts(section.scores) %}
<tr class="{{ 'flagged' if row.flagged }}"><td>{{ row.rank }}</td><td>{{ row.concept }}</td><td>{{ fmt(row.score) }}</td>
<td>{{ fmt(row.enrichment) }}</td><td>{{ fmt(row.reliance) }}</td><td>{{ fmt(row.decision) }}</td><td>{{ fmt(row.call_rate) }}{% if row.call_rate == row.call_rate %} [{{ fmt(row.call_rate_low, 2) }}, {{ fmt(row.call_rate_high, 2) }}]{% endif %}</td><td>{{ fmt(row.set_consistency, 2) }}</td>
<td>{{ 'flagged' if row.flagged else ('mirror of ' ~ row.get('mirror_of') if row.get('mirror_of') else '') }}</td><td>{% if row.strip %}<img class="pixels" src="{{ row.strip }}" alt="evidence for {{ row.concept }}">{% endif %}</td></tr>
{% endfor %}</table>
{% set first = section.scores.iloc[0] %}
<p class="note">Threshold {{ fmt(first.threshold) }} (permutation null {{ fmt(first.null_threshold) }}).
{{ first.members }} members against {{ first.reference }} {{ section.compared_with }}, compared {{ first.comparison }}{% if first.comparison == "stratified" %}:
{{ first.recognised_members }} members vs {{ first.recognised_reference }} reference images CLIP recognises as {{ section.core }} (enrichment),
{{ first.absent_members }} vs {{ first.absent_reference }} where CLIP finds it absent (reliance);
the model calls {{ first.called_reference }} reference images {{ section.core }} (decision){% endif %}.
"sets" is the share of sets enriched in the concept.</p>
{% for name, path in section.figures.items() %}
<img class="figure" src="{{ uri(path) }}" alt="{{ name }} of {{ section.group }}">
{% endfor %}
<h3>Clusters</h3>
<table><tr><th>scope</th><th>cluster</th><th>size</th><th>name</th><th>top concepts</th><th>representatives</th></tr>
{% for row in section.clusters.to_dict("records") %}
<tr><td>{{ row.scope }}</td><td>{{ row.cluster }}</td><td>{{ row.size }}</td><td>{{ row.name }}</td>
<td>{{ row.concepts | join(", ") }}</td><td><img class="pixels" src="{{ strip(row.representatives[:6]) }}" alt="cluster {{ row.cluster }}"></td></tr>
{% endfor %}</table>
<h3>Invariant sets</h3>
{{ table(sets(section)) }}
{% for set_id, path in section.set_figures.items() %}
<img class="figure" src="{{ uri(path) }}" alt="invariant set {{ set_id }}">
{% endfor %}
{% endfor %}
{% if report.samplers is not none %}
<h2>Samplers</h2>
{{ table(report.samplers) }}
{% endif %}
{% for name, path in report.figures.items() if name != "evaluation" %}
<img class="figure" src="{{ uri(path) }}" alt="{{ name }}">
{% endfor %}
</body></html>
""")


FINDING_COLUMNS = ["concept", "readout", "verdict", "effect", "low", "high", "edits", "tried", "mirror_of"]


def findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings and mirrors, then every other effect with an interval, strongest first."""
    order = {"finding": 0, "mirror": 1, "avoided": 2, "none": 3}
    table = findings.assign(order=findings["verdict"].map(order), strength=-findings["effect"].abs())
    return table.sort_values(["order", "strength"])[FINDING_COLUMNS].reset_index(drop=True)


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: _fmt(v), border=0, na_rep="–")


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    return TEMPLATE.render(
        report=report, uri=png_data_uri, strip=lambda paths: strip_data_uri(list(paths)),
        concepts=lambda scores: _concept_rows(scores, TOP_CONCEPTS), fmt=_fmt,
        table=lambda frame: markupsafe.Markup(_html_table(frame)),
        sets=lambda section: _set_table(report.summaries, section.set_ids), findings_table=findings_table,
        directions=lambda: markupsafe.Markup(directions_html(
            report.directions, lambda frame: markupsafe.Markup(_html_table(frame)), png_data_uri)),
    )


def render_markdown(report: Report, directory: str | Path) -> str:
    """A Markdown summary whose image links are relative to `directory` (where it will be written)."""
    def link(path: Path, text: str) -> str:
        return f"![{text}]({os.path.relpath(path, directory)})"

    lines = [f"# {report.title}", ""]
    if report.evaluation is not None:
        lines += ["## Against the planted shortcuts", "", to_markdown(report.evaluation)]
        if report.winner:
            lines += [f"Best method by F1 (then mean reciprocal rank): **{report.winner}**.", ""]
    if report.findings is not None:
        lines += ["## Findings from concept interventions", "", to_markdown(findings_table(report.findings))]
        lines += [link(path, name) for name, path in report.intervention_figures.items()] + [""]
    if report.misclassified is not None and len(report.misclassified):
        lines += ["## Sources the model misclassifies", "",
                  "Their label, logit and probability sets are explained in the group of the class the model "
                  "assigns them.", "", to_markdown(report.misclassified)]
    lines += directions_markdown(report.directions, link)
    for section in report.groups:
        shown = section.scores[section.scores["rank"] > 0].sort_values("rank").head(TOP_CONCEPTS)
        columns = ["rank", "concept", "score", "enrichment", "reliance", "decision", "call_rate", "flagged", "mirror_of"]
        table = shown[[c for c in columns if c in shown]]
        flagged = "; ".join(_finding(row, section) for row in shown[shown["flagged"]].itertuples()) or "none"
        heading = f"## {section.group}" + (f" ({section.note})" if section.note else "")
        lines += [heading, "", f"Flagged concepts: {flagged}.", ""]
        mirrors = shown[shown.get("mirror_of", pd.Series("", index=shown.index)) != ""]
        if len(mirrors):
            named = "; ".join(f"{row.concept} (of {row.mirror_of})" for row in mirrors.itertuples())
            lines += [f"Mirror images of another class's finding, not flagged: {named}.", ""]
        lines += [to_markdown(table)]
        lines += [link(path, name) for name, path in section.figures.items()] + [""]
    if report.samplers is not None:
        lines += ["## Samplers", "", to_markdown(report.samplers)]
    lines += [link(path, name) for name, path in report.figures.items()]
    return "\n".join(lines) + "\n"


def _finding(row: object, section: GroupSection) -> str:
    """A flagged concept in bold, with how much more often the model calls the group's class with it (a regression
    counterfactual's group: puts it beyond the median of its outputs in the group's direction) and the interval of
    that call rate."""
    if not np.isfinite(row.call_rate):  # a group confirmed on no calls, or too few reference images to measure it
        return f"**{row.concept}**"
    if section.core:
        call = f"the model calls reference images showing it {section.core}"
    else:
        half = "upper" if section.kind == MOVED_UP else "lower"
        call = f"the regressor puts reference images showing it in the {half} half of its outputs"
    return (f"**{row.concept}** ({call} {100 * row.call_rate:.0f} points more often than those without it; "
            f"{100 * row.call_rate_confidence:.0f} % interval {100 * row.call_rate_low:.0f} to "
            f"{100 * row.call_rate_high:.0f})")


def write_report(report: Report, html_path: str | Path, markdown_path: str | Path) -> None:
    """Write both documents atomically."""
    with atomic_path(html_path) as tmp:
        tmp.write_text(render_html(report))
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(render_markdown(report, Path(markdown_path).parent))
