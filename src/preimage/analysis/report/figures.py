"""Figures of a run, each a function from cached tables/images to a matplotlib Figure (the set grids, only pixels
and text, to a PIL image).

Save them with `preimage.analysis.report.style.save_figure` (PNG + PDF). Embedding maps draw the 2-D layout the
concept step cached (`preimage.analysis.concepts.maps`), so no figure runs t-SNE.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image, ImageDraw, ImageFont

from preimage.analysis.report.style import (
    FLAGGED,
    MIRROR,
    NOT_FLAGGED,
    PALETTE,
    REFERENCE,
    apply_style,
)
from preimage.analysis.report.tables import SAMPLER_METRICS
from preimage.utils.io import image_grid

GRID_FONT_SIZE = 15  # pixels, the set grids' text
GRID_PADDING = 8  # pixels between and around the set grids' panels


def read_png(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an image file."""
    return np.asarray(Image.open(path).convert("RGB"))


def read_pngs(paths: Sequence[str | Path]) -> np.ndarray:
    """(N, H, W, 3) uint8 pixels of same-sized image files; (0, 1, 1, 3) for none."""
    if not paths:
        return np.zeros((0, 1, 1, 3), dtype=np.uint8)
    return np.stack([read_png(p) for p in paths])


def _show(axis: plt.Axes, image: np.ndarray, title: str = "") -> None:
    axis.imshow(image, interpolation="nearest")
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.grid(False)


def set_grid_image(source: np.ndarray | None, members: np.ndarray, title: str, columns: int = 8,
                   scale: int = 4) -> np.ndarray:
    """The source image beside a grid of accepted members of its invariant set (either may be missing), each
    panel named above it and the title on top: a raster montage with its pixels enlarged `scale` times
    (nearest neighbour, so no pixel is blurred), drawn without matplotlib since it is only pixels and text;
    (H, W, 3) uint8."""
    panels = [("source", source)] if source is not None else []
    if len(members):
        panels.append((f"{len(members)} members", image_grid(members, min(columns, len(members)))))
    if not panels:
        raise ValueError(f"{title}: no source and no members to show")
    font = ImageFont.load_default(size=GRID_FONT_SIZE)
    line = GRID_FONT_SIZE + GRID_PADDING
    enlarged = [(name, Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale),
                                                     Image.Resampling.NEAREST)) for name, image in panels]
    width = sum(image.width for _, image in enlarged) + 2 * GRID_PADDING * len(enlarged)
    width = max(width, int(font.getlength(title)) + 2 * GRID_PADDING)
    height = 2 * line + max(image.height for _, image in enlarged) + GRID_PADDING
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((width // 2, GRID_PADDING), title, fill="black", font=font, anchor="mt")
    left = GRID_PADDING
    for name, image in enlarged:  # each panel with a padding on either side
        draw.text((left + image.width // 2, line + GRID_PADDING // 2), name, fill="black", font=font, anchor="mt")
        canvas.paste(image, (left, 2 * line))
        left += image.width + 2 * GRID_PADDING
    return np.asarray(canvas)


def cluster_montage_figure(clusters: pd.DataFrame, title: str, per_row: int = 8) -> plt.Figure:
    """One row per cluster: its name, size and most central members (medoid first)."""
    apply_style()
    if clusters.empty:
        raise ValueError(f"{title}: no clusters to show")
    figure, axes = plt.subplots(len(clusters), 1, figsize=(1.0 * per_row + 2.5, 1.1 * len(clusters) + 0.5),
                                squeeze=False, layout="constrained")
    for axis, cluster in zip(axes[:, 0], clusters.itertuples()):
        images = read_pngs(list(cluster.representatives)[:per_row])
        _show(axis, image_grid(images, per_row), "")
        axis.set_ylabel(f"{cluster.cluster}: {cluster.name}\n({cluster.size} members)", rotation=0, ha="right",
                        va="center", fontsize=9)
    silhouette = clusters["silhouette"].iloc[0]
    suffix = f"k = {clusters['k'].iloc[0]}" + (f", silhouette {silhouette:.2f}" if np.isfinite(silhouette) else "")
    figure.suptitle(f"{title} ({suffix})")
    return figure


def embedding_map_figure(embedding_map: pd.DataFrame, names: dict[int, str], title: str) -> plt.Figure:
    """A map table's members coloured by cluster over the reference samples (grey dots) and, when it has
    them, real images of the class (grey crosses)."""
    apply_style()
    roles = embedding_map["role"]
    members, reference, real = (embedding_map[roles == role] for role in ("member", "reference", "real"))
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    axis.scatter(reference["x"], reference["y"], s=8, color=REFERENCE, label="prior samples", linewidths=0)
    if len(real):
        axis.scatter(real["x"], real["y"], s=6, marker="x", color="dimgray", alpha=0.5, linewidths=0.5,
                     label="real images of the class")
    for cluster, rows in members.groupby("cluster", sort=True):
        axis.scatter(rows["x"], rows["y"], s=16, color=PALETTE[int(cluster) % len(PALETTE)], edgecolors="white",
                     linewidths=0.3, label=f"{cluster}: {names.get(int(cluster), '')}")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(title)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), markerscale=2)
    return figure


def enrichment_figure(scores: pd.DataFrame, title: str, top: int = 15) -> plt.Figure:
    """Top candidate concepts by score, flagged ones highlighted, with the flag threshold."""
    apply_style()
    shown = scores[scores["rank"] > 0].sort_values("rank").head(top)
    if shown.empty:
        raise ValueError(f"{title}: no scored candidate concept to show")
    figure, axis = plt.subplots(figsize=(6, 0.32 * len(shown) + 1.2))
    mirror = shown["mirror_of"] != "" if "mirror_of" in shown else pd.Series(False, index=shown.index)
    colours = [FLAGGED if f else MIRROR if m else NOT_FLAGGED for f, m in zip(shown["flagged"], mirror)]
    axis.barh(shown["concept"], shown["score"], color=colours)
    axis.invert_yaxis()
    threshold = shown["threshold"].iloc[0]
    if np.isfinite(threshold):
        axis.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"flag threshold {threshold:.2f}")
    if mirror.any():
        axis.barh([], [], color=MIRROR, label="mirror of another class's finding")
    if np.isfinite(threshold) or mirror.any():
        axis.legend(loc="lower right", fontsize=8)
    axis.set_xlabel("spurious-feature score (mean of reliance and decision, else enrichment)")
    axis.set_title(title)
    return figure


def guidance_figure(summaries: pd.DataFrame) -> plt.Figure:
    """Acceptance rate against diversity, one line per sampler through its guidance scales (sets of
    samplers without guidance, whose scale is NaN, are left out)."""
    apply_style()
    required = {"sampler", "guidance_scale", "acceptance_rate", "diversity"}
    missing = sorted(required - set(summaries.columns))
    if missing:
        raise ValueError(f"set summaries lack column(s) {missing} needed for the guidance figure")
    guided = summaries[np.isfinite(summaries["guidance_scale"].astype(float))]
    means = guided.groupby(["sampler", "guidance_scale"], as_index=False)[["acceptance_rate", "diversity"]].mean()
    figure, axis = plt.subplots(figsize=(5.5, 4))
    if means.empty:
        axis.text(0.5, 0.5, "no set was drawn with a guidance scale", ha="center", va="center",
                  transform=axis.transAxes)
    for colour, (sampler, rows) in zip(PALETTE, means.groupby("sampler")):
        rows = rows.sort_values("guidance_scale")
        axis.plot(rows["acceptance_rate"], rows["diversity"], marker="o", color=colour, label=sampler)
        for row in rows.itertuples():
            axis.annotate(f"{row.guidance_scale:g}", (row.acceptance_rate, row.diversity), fontsize=7,
                          textcoords="offset points", xytext=(4, 4))
    axis.set_xlabel("acceptance rate")
    axis.set_ylabel("diversity (mean pairwise LPIPS)")
    axis.set_title("acceptance vs diversity across guidance scales")
    if not means.empty:
        axis.legend(title="sampler")
    return figure


def sampler_figure(table: pd.DataFrame) -> plt.Figure:
    """One bar panel per metric of the sampler table: a bar per sampler, grouped by objective where the table
    has one."""
    apply_style()
    by_objective = "objective" in table
    samplers = table["sampler"].nunique()
    width = 3.0 + (0.5 * table["objective"].nunique() if by_objective else 0.0)
    figure, axes = plt.subplots(1, len(SAMPLER_METRICS), figsize=(width * len(SAMPLER_METRICS), 3.4),
                                layout="constrained")
    for index, (axis, (column, label)) in enumerate(zip(axes, SAMPLER_METRICS.items())):
        sns.barplot(data=table, x="objective" if by_objective else "sampler", y=column, hue="sampler", ax=axis,
                    palette=PALETTE[:samplers], legend=by_objective and index == len(axes) - 1)
        axis.set_title(label)
        axis.set_xlabel("")
        axis.set_ylabel("")
        if by_objective:
            axis.tick_params(axis="x", labelrotation=30)
    if by_objective:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.01, 1), title="sampler")
    figure.suptitle("sampler comparison")
    return figure


def evaluation_figure(summary: pd.DataFrame) -> plt.Figure:
    """Precision, recall, F1, hit@1 and MRR against the planted shortcuts, one bar group per method."""
    apply_style()
    metrics = ["precision", "recall", "f1", "hit_at_1", "mrr"]
    long = summary.melt(id_vars="method", value_vars=metrics, var_name="metric", value_name="value")
    figure, axis = plt.subplots(figsize=(6, 3.2))
    sns.barplot(data=long, x="metric", y="value", hue="method", ax=axis)
    sns.move_legend(axis, "upper left", bbox_to_anchor=(1.01, 1), title="method")
    axis.set_ylim(0, 1.05)
    axis.set_xlabel("")
    axis.set_title("recovery of the planted shortcuts")
    return figure


VERDICT_COLOURS = {"finding": FLAGGED, "mirror": MIRROR, "avoided": MIRROR, "none": NOT_FLAGGED}


def effects_figure(findings: pd.DataFrame, min_effect: float) -> plt.Figure:
    """Per readout (a class's probability, a regressor's output), each tested concept's effect with its interval,
    coloured by verdict, with the minimum effect a finding's interval must clear."""
    apply_style()
    if findings.empty:
        raise ValueError("effects figure: no tested concept to show")
    readouts = list(dict.fromkeys(findings["readout"]))
    concepts = list(dict.fromkeys(findings.sort_values("concept")["concept"]))
    figure, axes = plt.subplots(1, len(readouts), figsize=(2.2 * len(readouts) + 2, 0.3 * len(concepts) + 1.4),
                                sharey=True, squeeze=False)
    for axis, readout in zip(axes[0], readouts):
        rows = findings[findings["readout"] == readout].set_index("concept").reindex(concepts)
        y = np.arange(len(concepts))
        low = (rows["effect"] - rows["low"]).clip(lower=0).fillna(0)
        high = (rows["high"] - rows["effect"]).clip(lower=0).fillna(0)
        for verdict, colour in VERDICT_COLOURS.items():
            shown = (rows["verdict"].fillna("none") == verdict).to_numpy()
            if shown.any():
                axis.errorbar(rows["effect"][shown], y[shown], xerr=[low[shown], high[shown]], fmt="o", markersize=3,
                              color=colour, elinewidth=1.5, capsize=2)
        for bound in (-min_effect, min_effect):
            axis.axvline(bound, color="black", linestyle="--", linewidth=0.8)
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_title(readout, fontsize=9)
        axis.set_yticks(y, concepts)
    axes[0][0].invert_yaxis()
    figure.supxlabel("effect of the concept's presence (with minus without; interval: bootstrap)", fontsize=9)
    figure.suptitle("concept interventions")
    return figure


def intervention_pairs_figure(findings: pd.DataFrame, edits: pd.DataFrame, images: np.ndarray,
                              concepts: Sequence[str], examples: int = 4) -> plt.Figure:
    """For each finding and mirror (without any: each concept with the readout it moves most), up to `examples`
    successful edits: the image without the concept beside the
    image with it, titled with the readout's value on each. `images` is (concepts, images, 3, H, W, 3) uint8
    (source, edit, null) in the order of `concepts`; `edits` the intervention table."""
    apply_style()
    shown = findings[findings["verdict"].isin(["finding", "mirror"])]
    if shown.empty:  # no finding: each concept with the readout it moves most
        shown = findings.loc[findings["effect"].abs().fillna(-1).groupby(findings["concept"]).idxmax()]
    figure, axes = plt.subplots(len(shown), 2 * examples, figsize=(1.3 * 2 * examples, 1.55 * len(shown) + 0.4),
                                squeeze=False)
    for row, finding in zip(axes, shown.itertuples()):
        done = edits[(edits["concept"] == finding.concept) & edits["success"]].head(examples)
        for axis in row:
            axis.axis("off")
        for k, (_, edit) in enumerate(done.iterrows()):
            pair = images[list(concepts).index(finding.concept), edit["image"]]
            values = {"edit": edit[f"edit:{finding.readout}"], "null": edit[f"null:{finding.readout}"]}
            with_, without = ("edit", "null") if edit["direction"] == "add" else ("null", "edit")
            pixels = {"edit": pair[1], "null": pair[2]}
            _show(row[2 * k], pixels[without], f"without {values[without]:.2f}")
            _show(row[2 * k + 1], pixels[with_], f"with {values[with_]:.2f}")
        row[0].set_ylabel(f"{finding.concept}\n-> {finding.readout}", fontsize=8)
        row[0].axis("on")
        row[0].set_xticks([])
        row[0].set_yticks([])
    figure.suptitle("edited pairs: without / with the concept (readout value)")
    return figure
