"""Sample attributes and images of the shortcut world, with shortcuts planted in the classifier's data.

Splits come in three kinds:
- ``biased``: the classifier's data. For a shortcut ``{class, attribute, value, strength}`` an image of
  that class takes ``value`` with probability ``strength``; other classes take it with probability
  ``leak`` only.
- ``unbiased``: every attribute independent and uniform; trains the prior, the CLIP model and the oracle.
- ``broken``: each shortcut reversed: its class never shows the value, other classes show it half of
  the time; measures whether the classifier relies on the shortcut.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from preimage.utils.hashing import stable_hash
from preimage.world.attributes import CATEGORICAL, CONTINUOUS, SHAPES
from preimage.world.render import render

SPLIT_KINDS: dict[str, str] = {
    "classifier_train": "biased",
    "classifier_test": "biased",
    "broken_test": "broken",
    "prior_train": "unbiased",
    "unbiased_test": "unbiased",
}
BROKEN_RATE = 0.5


@dataclass(frozen=True)
class Shortcut:
    """A planted correlation between a class and an attribute value in the classifier's data."""

    cls: str
    attribute: str
    value: str
    strength: float


@dataclass(frozen=True)
class WorldSpec:
    """Everything that determines a world's data; two equal specs give byte-identical splits."""

    name: str
    seed: int
    image_size: int
    shapes: tuple[str, ...]
    shortcuts: tuple[Shortcut, ...]
    leak: float
    split_sizes: tuple[tuple[str, int], ...]

    @classmethod
    def from_config(cls, world: dict) -> WorldSpec:
        """Build a spec from the ``world`` section of config.yaml, checking cross-references."""
        shapes = tuple(world["shapes"])
        for shape in shapes:
            if shape not in SHAPES:
                raise ValueError(f"world.shapes: unknown shape {shape!r}; expected one of {list(SHAPES)}")
        if len(set(shapes)) != len(shapes) or len(shapes) < 2:
            raise ValueError(f"world.shapes: need at least two distinct shapes, got {list(shapes)}")
        shortcuts = tuple(_shortcut_from_config(i, entry, shapes) for i, entry in enumerate(world["shortcuts"]))
        claimed = [(s.cls, s.attribute) for s in shortcuts]
        if len(set(claimed)) != len(claimed):
            raise ValueError("world.shortcuts: a class may carry at most one shortcut per attribute")
        for attribute in {s.attribute for s in shortcuts}:
            values = {s.value for s in shortcuts if s.attribute == attribute}
            if len(values) >= len(CATEGORICAL[attribute]):
                raise ValueError(f"world.shortcuts: every value of {attribute!r} is claimed; leave one free")
        return cls(
            name=world["name"],
            seed=int(world["seed"]),
            image_size=int(world["image_size"]),
            shapes=shapes,
            shortcuts=shortcuts,
            leak=float(world["shortcut_leak"]),
            split_sizes=tuple(sorted((k, int(v)) for k, v in world["splits"].items())),
        )

    def data_fingerprint(self, biased: bool) -> str:
        """Short stable hash of what decides a model's training data.

        Models trained on unbiased splits ignore the shortcuts, so a world that only plants other
        shortcuts retrains the classifier (seconds) and keeps the prior, CLIP model and oracle.
        """
        used = {s for s, kind in SPLIT_KINDS.items() if (kind == "unbiased") != biased}
        fields = {
            "seed": self.seed,
            "image_size": self.image_size,
            "shapes": self.shapes,
            "split_sizes": [pair for pair in self.split_sizes if pair[0] in used],
        }
        if biased:
            fields |= {"shortcuts": [asdict(s) for s in self.shortcuts], "leak": self.leak}
        return stable_hash(fields)

    def size_of(self, split: str) -> int:
        return dict(self.split_sizes)[split]




def _shortcut_from_config(index: int, entry: dict, shapes: tuple[str, ...]) -> Shortcut:
    where = f"world.shortcuts[{index}]"
    if entry["class"] not in shapes:
        raise ValueError(f"{where}.class: {entry['class']!r} is not one of world.shapes {list(shapes)}")
    if entry["attribute"] not in CATEGORICAL:
        raise ValueError(f"{where}.attribute: {entry['attribute']!r}; expected one of {list(CATEGORICAL)}")
    allowed = CATEGORICAL[entry["attribute"]]
    if entry["value"] not in allowed:
        raise ValueError(f"{where}.value: {entry['value']!r} is not a value of {entry['attribute']}; expected one of {list(allowed)}")
    return Shortcut(entry["class"], entry["attribute"], entry["value"], float(entry["strength"]))


def value_probabilities(spec: WorldSpec, kind: str, cls: str, attribute: str) -> np.ndarray:
    """P(attribute = value | class) for every value of a categorical attribute, in a split kind."""
    values = CATEGORICAL[attribute]
    planted = [s for s in spec.shortcuts if s.attribute == attribute]
    if kind == "unbiased" or not planted:
        return np.full(len(values), 1.0 / len(values))
    own = next((s for s in planted if s.cls == cls), None)
    others = {s.value for s in planted if s.cls != cls}
    probs = np.zeros(len(values))
    if kind == "biased":
        fixed = {s.value: spec.leak for s in planted if s.cls != cls}
        if own is not None:
            fixed[own.value] = own.strength
    elif kind == "broken":
        fixed = {value: BROKEN_RATE / len(others) for value in others}
        if own is not None:
            fixed[own.value] = 0.0
    else:
        raise ValueError(f"unknown split kind {kind!r}; expected one of biased, unbiased, broken")
    free = [v for v in values if v not in fixed]
    for i, value in enumerate(values):
        probs[i] = fixed[value] if value in fixed else (1.0 - sum(fixed.values())) / len(free)
    return probs


def _rng(spec: WorldSpec, split: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([spec.seed, zlib.crc32(split.encode())]))


def sample_attributes(spec: WorldSpec, split: str) -> pd.DataFrame:
    """Draw the attribute table of a split: one row per image, balanced over classes."""
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_KINDS)}")
    kind, n, rng = SPLIT_KINDS[split], spec.size_of(split), _rng(spec, split)
    labels = rng.permutation(np.arange(n) % len(spec.shapes))
    table = pd.DataFrame({"image_id": [f"{split}-{i:06d}" for i in range(n)], "label": labels})
    table["shape"] = np.asarray(spec.shapes)[labels]
    for attribute, values in CATEGORICAL.items():
        column = np.empty(n, dtype=object)
        for label, cls in enumerate(spec.shapes):
            rows = np.flatnonzero(labels == label)
            p = value_probabilities(spec, kind, cls, attribute)
            column[rows] = rng.choice(np.asarray(values, dtype=object), size=len(rows), p=p)
        table[attribute] = column.astype(str)
    for attribute, (low, high) in CONTINUOUS.items():
        table[attribute] = rng.uniform(low, high, size=n).astype(np.float32)
    return table


def render_images(table: pd.DataFrame, image_size: int) -> np.ndarray:
    """Render every row of an attribute table: (N, H, W, 3) uint8."""
    images = np.empty((len(table), image_size, image_size, 3), dtype=np.uint8)
    for i, row in enumerate(table.to_dict("records")):
        images[i] = render(row, image_size)
    return images


def make_split(spec: WorldSpec, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Attributes and pixels of one split; deterministic in (spec, split)."""
    table = sample_attributes(spec, split)
    return table, render_images(table, spec.image_size)


def ground_truth(spec: WorldSpec) -> pd.DataFrame:
    """The planted shortcuts as a table: read by evaluation code only, never by explanation code."""
    return pd.DataFrame(
        [asdict(s) | {"class": s.cls} for s in spec.shortcuts],
        columns=["class", "attribute", "value", "strength"],
    )
