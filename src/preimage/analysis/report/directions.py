"""The report's global counterfactual directions: their figures (held-out images before and after the edit, flip
rate per source class) and their section of the HTML page and the Markdown summary."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from preimage.analysis.report.style import PALETTE, REFERENCE, apply_style
from preimage.analysis.report.tables import to_markdown
from preimage.utils.io import image_grid

SHOWN_PER_CLASS = 8
TOP_CONCEPTS = 5
SUMMARY_COLUMNS = ["source_class", "images", "flip_rate", "reconstruction_flip_rate", "lpips_to_original",
                   "lpips_to_reconstruction", "clip_target_before", "clip_target_after"]


def direction_grid_figure(originals: np.ndarray, edited: np.ndarray, classes: np.ndarray, target: str,
                          per_class: int = SHOWN_PER_CLASS) -> plt.Figure:
    """For each source class, a row of held-out images above the same images after the edit (uint8, N x H x W x 3)."""
    apply_style()
    names = list(dict.fromkeys(classes))
    rows = [np.flatnonzero(classes == name)[:per_class] for name in names]
    columns = max(len(shown) for shown in rows)
    blank = np.full((columns, *originals.shape[1:]), 255, dtype=np.uint8)  # pads a short row
    tiles = [np.concatenate([images[shown], blank[: columns - len(shown)]]) for shown in rows
             for images in (originals, edited)]
    figure, axis = plt.subplots(figsize=(columns * 0.6 + 1.2, len(tiles) * 0.6 + 0.6))
    axis.imshow(image_grid(np.concatenate(tiles), columns), interpolation="nearest")
    axis.set_yticks([(i + 0.5) * originals.shape[1] for i in range(len(tiles))],
                    [f"{name} {when}" for name in names for when in ("before", "after")], fontsize=8)
    axis.set_xticks([])
    axis.grid(False)
    axis.set_title(f"global direction towards {target}", fontsize=9)
    return figure


def flip_rate_figure(summary: pd.DataFrame) -> plt.Figure:
    """Per source class, the share of held-out images the classifier calls the target after the edit, beside the
    share after the reconstruction alone (the control)."""
    apply_style()
    long = summary.melt(id_vars="source_class", value_vars=["reconstruction_flip_rate", "flip_rate"],
                        var_name="images", value_name="called target")
    long["images"] = long["images"].map({"reconstruction_flip_rate": "reconstructed", "flip_rate": "edited"})
    figure, axis = plt.subplots(figsize=(4.5, 3))
    sns.barplot(data=long, x="source_class", y="called target", hue="images", palette=[REFERENCE, PALETTE[0]], ax=axis)
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("source class")
    axis.set_title(f"flip rate towards {summary['target'].iloc[0]}")
    return figure


@dataclass
class DirectionSection:
    """Everything the report shows for one target's global direction."""

    target: str
    summary: pd.DataFrame
    concepts: pd.DataFrame
    search: dict
    oracle: pd.DataFrame | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    """PNG paths: "grid", "flips"."""

    @classmethod
    def read(cls, folder: str | Path, figures: Mapping[str, str | Path], evaluated: bool) -> DirectionSection:
        """A direction's section from its folder (results/directions/<target>/) and figure PNGs; with
        `evaluated`, the oracle's reading (`oracle.parquet`) too."""
        folder = Path(folder)
        search = json.loads((folder / "search.json").read_text())
        return cls(target=search["target"], summary=pd.read_parquet(folder / "summary.parquet"),
                   concepts=pd.read_parquet(folder / "concepts.parquet"), search=search,
                   oracle=pd.read_parquet(folder / "oracle.parquet") if evaluated else None,
                   figures={name: Path(path) for name, path in figures.items()})

    @property
    def note(self) -> str:
        """One line on the search."""
        s = self.search
        return (f"Found on {s['train_images']} training images with {s['classifier_calls']} calls of the classifier "
                f"(its outputs only) in {s['search_seconds']:.0f} s; it flips {s['train_flip_rate']:.0%} of the "
                f"training images it does not call {self.target} (the mean-difference start: "
                f"{s['train_flip_rate_start']:.0%}).")


SECTION = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""
<h2>Global directions</h2>
<p class="note">One edit of the prior's latent per target class, found with the classifier's outputs alone (GCD),
applied to held-out images of every other class. The flip rate is the share the classifier then calls the target;
the reconstruction (the same images inverted and regenerated without the edit) is the control. CLIP's concepts are
those whose similarity rises most from the reconstruction to the edit{% if evaluated %}; the oracle's attributes
(evaluation only) those whose reading changes most{% endif %}.</p>
{% for section in sections %}
<h3 id="direction-{{ section.target }}">towards {{ section.target }}</h3>
<p class="note">{{ section.note }}</p>
{{ table(summary(section)) }}
<h4>CLIP concepts that rise most</h4>
{{ table(section.concepts.head(top)) }}
{% if section.oracle is not none %}<h4>Oracle attributes that change most (evaluation)</h4>
{{ table(section.oracle) }}{% endif %}
{% for name, path in section.figures.items() %}
<img class="figure" src="{{ uri(path) }}" alt="{{ name }} of the direction towards {{ section.target }}">
{% endfor %}
{% endfor %}
""")


def _summary(section: DirectionSection) -> pd.DataFrame:
    return section.summary[[c for c in SUMMARY_COLUMNS if c in section.summary.columns]]


def directions_html(sections: list[DirectionSection], table: Callable, uri: Callable) -> str:
    """The report's section on global directions (empty without any), with the page's `table` and `uri` helpers."""
    if not sections:
        return ""
    return SECTION.render(sections=sections, table=table, uri=uri, summary=_summary, top=TOP_CONCEPTS,
                          evaluated=any(section.oracle is not None for section in sections))


def directions_markdown(sections: list[DirectionSection], link: Callable[[Path, str], str]) -> list[str]:
    """The Markdown summary's lines on global directions (none without any)."""
    lines = ["## Global directions", ""] if sections else []
    for section in sections:
        concepts = ", ".join(section.concepts["concept"].head(3))
        lines += [f"### towards {section.target}", "", section.note, "", to_markdown(_summary(section)),
                  f"CLIP concepts that rise most: **{concepts}**.", ""]
        if section.oracle is not None:
            top = section.oracle.iloc[0]
            lines += [f"Oracle (evaluation): **{top['attribute']}** changes most ({top['changed']:.0%} of the images; "
                      f"{top['value']} {top['before']:.0%} -> {top['after']:.0%}).", "",
                      to_markdown(section.oracle.fillna({"concept": "–"}))]
        lines += [link(path, name) for name, path in section.figures.items()] + [""]
    return lines
