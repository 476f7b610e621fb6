"""Concept effects from interventions, and the findings they support.

An intervention on image i gives, for each readout r (a class's probability, a regressor's output), the
paired difference d_i = r(image with the concept) - r(image without it) (`preimage.analysis.concepts.interventions`).
A concept's *effect* on r balances its two kinds of edit: the mean of d_i over the successful edits that add it
and the mean over those that remove it, averaged, with a BCa bootstrap interval over images (scipy.stats.bootstrap,
each kind resampled on its own). Whatever the guidance changes besides the concept, alike in both kinds of edit
(say, shapes drawn a little larger), enters d_i with opposite signs and cancels; the concept's own effect enters
both with the same sign. A kind with fewer than `min_edits` successful edits is left out, and then nothing
cancels. Signed and per readout, the effect says which way the concept moves the model:

- a *finding* (concept, readout) is flagged when the interval's lower bound clears `min_effect`: "adding X moves
  the decision towards c by +d [low, high]". The class a shortcut belongs to is the one it pushes towards;
- a concept whose interval lies wholly below -`min_effect` is *avoided* by the readout: its presence pushes
  away. When that readout also has a flagged finding, the avoided concept is its *mirror image* (stripes push
  squares away because they push them to circles: "plain background" looks enriched for squares) and is listed
  under that finding rather than as a finding of its own;
- anything else is not flagged: the edits did not show an effect at least `min_effect` either way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from preimage.analysis.concepts.groups import MOVED_DOWN, MOVED_UP

DIFFERENCE = "difference:"
CLASS, REGRESSION = "class", "regression"  # what a readout reads: a class's probability, a regressor's output
ADD, REMOVE = "add", "remove"  # the two kinds of edit
DIRECTIONS = (ADD, REMOVE)
EFFECT_COLUMNS = ["concept", "readout", "edits", "tried", "add_effect", "remove_effect", "effect", "low", "high"]


@dataclass(frozen=True)
class EffectSettings:
    """Knobs of the estimate; config concepts.interventions maps onto these fields."""

    min_effect: float = 0.1
    confidence: float = 0.9
    resamples: int = 2000
    min_edits: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"interventions: confidence must be in (0, 1), got {self.confidence}")
        if self.min_effect < 0 or self.resamples < 100 or self.min_edits < 2:
            raise ValueError("interventions: min_effect must be >= 0, resamples >= 100 and min_edits >= 2, got "
                             f"{self.min_effect}, {self.resamples}, {self.min_edits}")


def mean_interval(groups: Sequence[np.ndarray], settings: EffectSettings) -> tuple[float, float, float]:
    """(effect, low, high): the mean of the groups' means (the adding and the removing edits' differences) and its
    BCa bootstrap interval, each group resampled on its own. Groups with fewer than `min_edits` values are left
    out; NaN when none is left, NaN bounds when every value is equal (no interval can be estimated)."""
    kept = [np.asarray(group, dtype=float) for group in groups if len(group) >= settings.min_edits]
    if not kept:
        return float("nan"), float("nan"), float("nan")
    effect = float(np.mean([group.mean() for group in kept]))
    if all(np.ptp(group) == 0 for group in kept):
        return effect, float("nan"), float("nan")
    result = bootstrap(tuple(kept), _mean_of_means, confidence_level=settings.confidence,
                       n_resamples=settings.resamples, method="BCa", vectorized=True,
                       random_state=np.random.default_rng(settings.seed))
    return effect, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean_of_means(*groups: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean([group.mean(axis=axis) for group in groups], axis=0)


def readouts_of(interventions: pd.DataFrame) -> list[str]:
    """The readouts an intervention table holds a difference for."""
    return [column.removeprefix(DIFFERENCE) for column in interventions.columns if column.startswith(DIFFERENCE)]


def concept_effects(interventions: pd.DataFrame, settings: EffectSettings = EffectSettings()) -> pd.DataFrame:
    """One row per (concept, readout): successful edits, edits tried, the effect of adding and of removing the
    concept, their balance (`effect`) and its interval."""
    missing = sorted({"concept", "direction", "success"} - set(interventions.columns))
    if missing or not readouts_of(interventions):
        raise ValueError(f"intervention table lacks column(s) {missing or ['difference:<readout>']}")
    rows = []
    for concept, edits in interventions.groupby("concept", sort=False):
        succeeded = edits[edits["success"].astype(bool)]
        by_direction = {direction: succeeded[succeeded["direction"] == direction] for direction in DIRECTIONS}
        for readout in readouts_of(interventions):
            column = DIFFERENCE + readout
            groups = [by_direction[d][column].to_numpy() for d in DIRECTIONS]
            one_way = [mean_interval([group], settings)[0] for group in groups]
            rows.append((concept, readout, len(succeeded), len(edits), *one_way,
                         *mean_interval(groups, settings)))
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def findings(effects: pd.DataFrame, settings: EffectSettings = EffectSettings(),
             regression: Collection[str] = ()) -> pd.DataFrame:
    """Effects with their verdict, ranked per readout by effect. For a class's probability: "finding" (flagged),
    "mirror" (avoided by a readout that has a finding; `mirror_of` names the findings' concepts), "avoided" or
    "none". For a readout in `regression` (a regressor's output) a clear effect either way is a finding, and
    `direction` says "up" or "down"."""
    out = effects.copy()
    signed = out["readout"].isin(list(regression))
    up, down = out["low"] > settings.min_effect, out["high"] < -settings.min_effect
    found = up | (signed & down)
    avoided = down & ~signed
    flagged_by_readout = out[found].groupby("readout")["concept"].agg(", ".join)
    mirror_of = out["readout"].map(flagged_by_readout).where(avoided)
    out["verdict"] = np.select([found, avoided & mirror_of.notna(), avoided], ["finding", "mirror", "avoided"], "none")
    out["flagged"] = found
    out["readout_kind"] = np.where(signed, REGRESSION, CLASS)
    out["direction"] = np.select([up, down], ["up", "down"], "")
    out["mirror_of"] = mirror_of
    out["rank"] = out.groupby("readout")["effect"].rank(ascending=False, method="first").fillna(0).astype(int)
    return out.sort_values(["readout", "rank"], ignore_index=True)


def as_scores(findings_table: pd.DataFrame) -> pd.DataFrame:
    """Findings in the shape of the invariant-set scores (kind, class, concept, extrinsic, score, rank, flagged),
    for the world's evaluation: a class's findings under kind "class"; a regressor's under "moved up" (effects
    raising its output) and "moved down" (lowering it), as its regression counterfactuals' groups are."""
    classes = findings_table[findings_table["readout_kind"] == CLASS]
    regression = findings_table[findings_table["readout_kind"] == REGRESSION]
    parts = [classes.assign(kind="class", score=classes["effect"])]
    for kind, sign in ((MOVED_UP, 1.0), (MOVED_DOWN, -1.0)):
        moved = regression.assign(kind=kind, score=sign * regression["effect"],
                                  flagged=regression["flagged"] & (regression["direction"] == ("up" if sign > 0 else "down")))
        moved["rank"] = moved.groupby("readout")["score"].rank(ascending=False, method="first").fillna(0).astype(int)
        parts.append(moved)
    table = pd.concat(parts, ignore_index=True).rename(columns={"readout": "class"})
    return table.assign(extrinsic=True)[["kind", "class", "concept", "extrinsic", "score", "rank", "flagged"]]
