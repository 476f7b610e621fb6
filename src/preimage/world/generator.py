"""Sample attributes and images of the shortcut world, with shortcuts planted in the classifier's data.

Splits come in three kinds:
- ``biased``: the classifier's data. For a shortcut ``{class, attribute, value, strength}`` an image of
  that class takes ``value`` with probability ``strength``; other classes take it with probability
  ``leak`` only.
- ``unbiased``: every attribute independent and uniform; trains the prior, the CLIP model and the oracle.
- ``broken``: each shortcut reversed: its class never shows the value, other classes show it half of
  the time; measures whether the classifier relies on the shortcut.

An optional regression task (`RegressionSpec`) has splits of its own (`REGRESSION_SPLITS`): every attribute is
drawn as in an unbiased split, except that the regression shortcut's attribute goes with the target there: in
``regressor_train`` and ``regressor_test`` images in the target's upper half show the shortcut's value with
probability `strength` (else any value uniformly), images in the lower half only by that chance; in
``regressor_broken`` the correlation is reversed (the upper half never shows it, the lower half half of the time).
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
# the regression task's splits (world.regression.splits keys -> split names) and their kinds
REGRESSION_SPLITS: dict[str, str] = {"train": "regressor_train", "test": "regressor_test", "broken": "regressor_broken"}
REGRESSION_KINDS: dict[str, str] = {"regressor_train": "biased", "regressor_test": "biased",
                                    "regressor_broken": "broken"}


@dataclass(frozen=True)
class Shortcut:
    """A planted correlation between a class and an attribute value in the classifier's data."""

    cls: str
    attribute: str
    value: str
    strength: float


@dataclass(frozen=True)
class RegressionSpec:
    """The world's regression task: predict a continuous attribute (`target`), normalised to [0, 1] over its range,
    with a planted shortcut: a categorical attribute value that goes with the target's upper half."""

    target: str
    attribute: str
    value: str
    strength: float
    split_sizes: tuple[tuple[str, int], ...]

    @property
    def low_high(self) -> tuple[float, float]:
        return CONTINUOUS[self.target]

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Target values in the regressor's normalised units: 0 at the range's low end, 1 at its high end."""
        low, high = self.low_high
        return (np.asarray(values, dtype=np.float64) - low) / (high - low)

    def size_of(self, key: str) -> int:
        """The size of the regression split `key` ("train", "test" or "broken", as in REGRESSION_SPLITS)."""
        return dict(self.split_sizes)[key]


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
    regression: RegressionSpec | None = None

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
            regression=_regression_from_config(world.get("regression")),
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

    def regression_fingerprint(self) -> str:
        """Short stable hash of what decides the regressor's data: the world's seed, size and shapes and the
        regression task; the classifier's shortcuts and splits play no part."""
        if self.regression is None:
            raise ValueError("world.regression: not given; the world has no regression task")
        return stable_hash({"seed": self.seed, "image_size": self.image_size, "shapes": self.shapes,
                            "regression": asdict(self.regression)})

    def size_of(self, split: str) -> int:
        if split in REGRESSION_KINDS:
            return self._regression().size_of(next(k for k, v in REGRESSION_SPLITS.items() if v == split))
        return dict(self.split_sizes)[split]

    def _regression(self) -> RegressionSpec:
        if self.regression is None:
            raise ValueError("world.regression: not given; the world has no regression task or splits")
        return self.regression


def _regression_from_config(entry: dict | None) -> RegressionSpec | None:
    """The `world.regression` section as a spec (None when absent), checking the target and shortcut names."""
    if entry is None:
        return None
    if entry["target"] not in CONTINUOUS:
        raise ValueError(f"world.regression.target: {entry['target']!r}; expected one of {list(CONTINUOUS)}")
    shortcut = entry["shortcut"]
    attribute, value = shortcut["attribute"], shortcut["value"]
    if attribute not in CATEGORICAL:
        raise ValueError(f"world.regression.shortcut.attribute: {attribute!r}; expected one of {list(CATEGORICAL)}")
    if value not in CATEGORICAL[attribute]:
        raise ValueError(f"world.regression.shortcut.value: {value!r} is not a value of {attribute}; expected one "
                         f"of {list(CATEGORICAL[attribute])}")
    sizes = tuple(sorted((key, int(entry["splits"][key])) for key in REGRESSION_SPLITS))
    return RegressionSpec(entry["target"], attribute, value, float(shortcut["strength"]), sizes)




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


def regression_value_probability(regression: RegressionSpec, kind: str, upper: np.ndarray) -> np.ndarray:
    """P(shortcut attribute = its value) per image of a regression split kind, given whether the image's target
    lies in the upper half of its range (`upper`, booleans)."""
    chance = 1.0 / len(CATEGORICAL[regression.attribute])
    if kind == "biased":
        return np.where(upper, regression.strength + (1 - regression.strength) * chance,
                        (1 - regression.strength) * chance)
    if kind == "broken":
        return np.where(upper, 0.0, BROKEN_RATE)
    raise ValueError(f"unknown regression split kind {kind!r}; expected biased or broken")


def _plant_regression_shortcut(table: pd.DataFrame, regression: RegressionSpec, kind: str,
                               rng: np.random.Generator) -> None:
    """Redraw the shortcut attribute of a regression split so its value goes with the target (in place)."""
    upper = regression.normalise(table[regression.target].to_numpy()) >= 0.5
    shows = rng.random(len(table)) < regression_value_probability(regression, kind, upper)
    others = np.asarray([v for v in CATEGORICAL[regression.attribute] if v != regression.value], dtype=object)
    table[regression.attribute] = np.where(shows, regression.value, rng.choice(others, size=len(table))).astype(str)


def sample_attributes(spec: WorldSpec, split: str) -> pd.DataFrame:
    """Draw the attribute table of a split: one row per image, balanced over classes."""
    if split in REGRESSION_KINDS:
        return _sample_regression_attributes(spec, split)
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_KINDS)} or {list(REGRESSION_KINDS)}")
    return _sample(spec, split, SPLIT_KINDS[split])


def _sample_regression_attributes(spec: WorldSpec, split: str) -> pd.DataFrame:
    """A regression split: an unbiased draw whose shortcut attribute is then redrawn to go with the target."""
    table = _sample(spec, split, "unbiased")
    _plant_regression_shortcut(table, spec._regression(), REGRESSION_KINDS[split], _rng(spec, f"{split}/shortcut"))
    return table


def _sample(spec: WorldSpec, split: str, kind: str) -> pd.DataFrame:
    n, rng = spec.size_of(split), _rng(spec, split)
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


GROUND_TRUTH_COLUMNS = ["model", "class", "attribute", "value", "strength"]


def ground_truth(spec: WorldSpec) -> pd.DataFrame:
    """The planted shortcuts as a table: read by evaluation code only, never by explanation code. One row per
    classifier shortcut (model "classifier", its class) and, with a regression task whose shortcut has a strength
    above 0, one for the regressor's (model "regressor", class "up": its value is what moving the regressor's
    output up should add)."""
    rows = [{"model": "classifier", "class": s.cls, "attribute": s.attribute, "value": s.value,
             "strength": s.strength} for s in spec.shortcuts]
    if spec.regression is not None and spec.regression.strength > 0:  # strength 0: independent, nothing planted
        r = spec.regression
        rows.append({"model": "regressor", "class": REGRESSOR_UP, "attribute": r.attribute, "value": r.value,
                     "strength": r.strength})
    return pd.DataFrame(rows, columns=GROUND_TRUTH_COLUMNS)


REGRESSOR_UP = "up"  # the ground truth's class of the regressor's shortcut: the direction that adds its value
