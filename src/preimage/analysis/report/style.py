"""One look for every figure: seaborn's paper theme, a fixed palette, PNG + PDF written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from preimage.utils.io import atomic_path  # noqa: E402

FORMATS = ("png", "pdf")
DPI = 150
PALETTE = sns.color_palette("colorblind")
FLAGGED = PALETTE[3]
NOT_FLAGGED = (0.62, 0.62, 0.62)
MIRROR = PALETTE[0]  # a mirror image of another class's finding
REFERENCE = (0.8, 0.8, 0.8)


def apply_style() -> None:
    """Set the shared theme; every figure function calls it, so figures match however they are made."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=1.1)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.bbox": "tight", "axes.titleweight": "bold",
                         "pdf.fonttype": 42, "svg.fonttype": "none"})


def save_figure(figure: plt.Figure, stem: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write `stem`.png and `stem`.pdf, or the given `formats` (the stem may end in either suffix), then close
    the figure."""
    stem = Path(stem)
    stem = stem.with_suffix("") if stem.suffix in {f".{f}" for f in FORMATS} else stem
    paths = []
    try:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format=fmt, dpi=DPI)
            paths.append(path)
    finally:
        plt.close(figure)
    return paths
