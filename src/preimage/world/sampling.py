"""Draw random shortcut worlds from a seed: the worlds of the many-world benchmark (`snakemake benchmark_worlds`).

A drawn world keeps every setting of the base world but its classifier shortcuts: 0 to `MAX_SHORTCUTS` of them,
each on a random class of the world's shapes, a random plantable attribute and value and a random strength. The
shapes themselves stay: the prior, the CLIP model, the oracle and the regressor are trained on data that depends on
them (`WorldSpec.data_fingerprint`, `regression_fingerprint`), so other classes would retrain every shared model,
where other shortcuts retrain only the classifier.

Valid by construction (what `WorldSpec.from_config` checks, and more):
- at most one shortcut per (class, attribute), and each (attribute, value) on one class only, so a planted value
  points to one class;
- only values a vocabulary can name (not an absence such as "no tag"), so every planted shortcut can be found;
- at least one value of each attribute left unplanted.

Worlds are drawn one by one from (seed, index), so the first N worlds of a seed are the same whatever the count
asked for (a benchmark grown from 3 to 8 worlds keeps its first 3). The number of shortcuts is stratified: each
block of `MAX_SHORTCUTS` + 1 consecutive worlds has every count from 0 to `MAX_SHORTCUTS` once, in random order,
so any 4 consecutive worlds include one without a shortcut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from preimage.world.attributes import CATEGORICAL
from preimage.world.vocabulary import world_concept

MAX_SHORTCUTS = 3
STRENGTHS = (0.6, 0.95)  # strength drawn uniformly in this range, rounded to 2 decimals
# (attribute, value) pairs a shortcut may be planted on: those a vocabulary names
PLANTABLE = tuple((attribute, value) for attribute, values in CATEGORICAL.items() for value in values
                  if world_concept(attribute, value) is not None)


@dataclass(frozen=True)
class SampledWorld:
    """One drawn world: its name, the seed and index it was drawn from, and its `world.shortcuts` entries."""

    name: str
    seed: int
    index: int
    shortcuts: tuple[dict, ...]

    def overlay(self, title: str) -> dict:
        """The config overlay that turns the base config into this world (`title`: its report title's prefix)."""
        planted = "; ".join(f"{s['attribute']}={s['value']} -> {s['class']} ({s['strength']:.2f})"
                            for s in self.shortcuts) or "no shortcut"
        return {"world": {"shortcuts": [dict(s) for s in self.shortcuts]},
                "report": {"title": f"{title}: {self.name} ({planted})"}}


def shortcut_counts(seed: int, count: int) -> list[int]:
    """The number of shortcuts of worlds 0..count-1: each block of MAX_SHORTCUTS + 1 a permutation of 0..MAX."""
    block = MAX_SHORTCUTS + 1
    blocks = [np.random.default_rng([seed, b, 0]).permutation(block) for b in range(-(-count // block))]
    return [int(n) for n in np.concatenate(blocks)[:count]] if blocks else []


def draw_shortcuts(rng: np.random.Generator, shapes: Sequence[str], count: int) -> tuple[dict, ...]:
    """`count` valid shortcuts (see the module's rules) on `shapes`, drawn with `rng`."""
    shortcuts: list[dict] = []
    while len(shortcuts) < count:
        cls = str(shapes[rng.integers(len(shapes))])
        attribute, value = PLANTABLE[rng.integers(len(PLANTABLE))]
        claimed = [(s["class"], s["attribute"]) for s in shortcuts]
        values = [(s["attribute"], s["value"]) for s in shortcuts]
        taken = {s["value"] for s in shortcuts if s["attribute"] == attribute} | {value}
        if (cls, attribute) in claimed or (attribute, value) in values or len(taken) >= len(CATEGORICAL[attribute]):
            continue
        strength = round(float(rng.uniform(*STRENGTHS)), 2)
        shortcuts.append({"class": cls, "attribute": attribute, "value": value, "strength": strength})
    return tuple(shortcuts)


def sample_worlds(seed: int, count: int, shapes: Sequence[str]) -> list[SampledWorld]:
    """The first `count` worlds drawn from `seed`, with shortcuts on `shapes` (at least two, the base world's)."""
    if len(shapes) < 2:
        raise ValueError(f"world.shapes: need at least two shapes to plant shortcuts on, got {list(shapes)}")
    worlds = []
    for index, n in enumerate(shortcut_counts(seed, count)):
        rng = np.random.default_rng([seed, index, 1])
        worlds.append(SampledWorld(f"world-{index:02d}", seed, index, draw_shortcuts(rng, shapes, n)))
    return worlds
