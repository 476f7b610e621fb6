"""The attribute oracle: reads every ground-truth attribute off an image, for evaluation only.

It is one timm network whose output vector is split into heads: a softmax head per categorical
attribute, a `valid` head (is this a clean single-shape world image at all?) and a regression head for
scale and position. Explanation code never uses it; it scores generated images against the truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from preimage.engine.models import load_classifier
from preimage.world.attributes import CATEGORICAL, CONTINUOUS

REGRESSED = ("scale", "x", "y")  # rotation is left out: symmetric shapes make it ambiguous
VALIDITY = ("invalid", "valid")


def head_layout(shapes: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """The categorical heads, in output order; the regression outputs follow them."""
    return [("shape", tuple(shapes)), *CATEGORICAL.items(), ("valid", VALIDITY)]


def output_size(shapes: tuple[str, ...]) -> int:
    return sum(len(values) for _, values in head_layout(shapes)) + len(REGRESSED)


def split_heads(outputs: torch.Tensor, shapes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Slice the oracle's output vector into named head logits plus 'regression'."""
    heads, start = {}, 0
    for name, values in head_layout(shapes):
        heads[name] = outputs[:, start : start + len(values)]
        start += len(values)
    heads["regression"] = outputs[:, start : start + len(REGRESSED)]
    return heads


def normalised_regression_targets(table: pd.DataFrame) -> np.ndarray:
    """Continuous attributes mapped to [-1, 1] so their losses weigh like the others."""
    columns = []
    for name in REGRESSED:
        low, high = CONTINUOUS[name]
        columns.append((table[name].to_numpy() - low) / (high - low) * 2 - 1)
    return np.stack(columns, axis=1).astype(np.float32)


def decode(outputs: torch.Tensor, shapes: tuple[str, ...]) -> pd.DataFrame:
    """Oracle outputs -> a table of predicted attributes with the confidence of each head."""
    heads = split_heads(outputs, shapes)
    table = {}
    for name, values in head_layout(shapes):
        probs = heads[name].softmax(1)
        table[name] = np.asarray(values)[probs.argmax(1).numpy()]
        table[f"{name}_confidence"] = probs.max(1).values.numpy()
    regression = heads["regression"].numpy()
    for i, name in enumerate(REGRESSED):
        low, high = CONTINUOUS[name]
        table[name] = (regression[:, i] + 1) / 2 * (high - low) + low
    return pd.DataFrame(table)


def corrupt(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Invalid images for the `valid` head: blends of two images, shuffled patches, or heavy noise.

    These resemble the failure modes of an undertrained prior (ghosted double shapes, broken
    layouts, noise), so the oracle can tell a clean sample from a plausible-looking failure.
    """
    n, size = len(images), images.shape[1]
    out = images.astype(np.float32).copy()
    kind = rng.integers(0, 3, size=n)
    partners = images[rng.permutation(n)].astype(np.float32)
    alpha = rng.uniform(0.3, 0.7, size=(n, 1, 1, 1))
    blend = kind == 0
    out[blend] = alpha[blend] * out[blend] + (1 - alpha[blend]) * partners[blend]
    patch = size // 4
    for i in np.flatnonzero(kind == 1):
        tiles = out[i].reshape(4, patch, 4, patch, 3).transpose(0, 2, 1, 3, 4).reshape(16, patch, patch, 3)
        tiles = tiles[rng.permutation(16)].reshape(4, 4, patch, patch, 3).transpose(0, 2, 1, 3, 4)
        out[i] = tiles.reshape(size, size, 3)
    noisy = kind == 2
    out[noisy] += rng.normal(0, 60, size=out[noisy].shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def load_oracle(path: str | Path) -> torch.nn.Module:
    """The saved oracle; it is a timm model in the same layout as classifiers, so the same loader serves."""
    return load_classifier(str(path))


@torch.no_grad()
def read_attributes(oracle: torch.nn.Module, images: torch.Tensor, shapes: tuple[str, ...]) -> pd.DataFrame:
    """Predicted attributes of [0, 1] images (B, 3, H, W)."""
    return decode(torch.cat([oracle(batch) for batch in images.split(512)]), shapes)


def attribute_distance(predicted: pd.DataFrame, reference: dict[str, np.ndarray], shapes: tuple[str, ...]) -> dict[str, float]:
    """Total-variation distance between predicted attribute frequencies and reference probabilities."""
    distances = {}
    for name, values in head_layout(shapes):
        if name == "valid":
            continue
        observed = predicted[name].value_counts(normalize=True).reindex(values, fill_value=0.0).to_numpy()
        distances[name] = float(0.5 * np.abs(observed - reference[name]).sum())
    return distances
