"""What a global counterfactual direction changes according to the world's attribute oracle. Evaluation only: the
direction's search and its CLIP description never read it."""

from __future__ import annotations

import pandas as pd
import torch

from preimage.world.oracle import head_layout, read_attributes
from preimage.world.vocabulary import world_concept

CHANGE_COLUMNS = ["attribute", "changed", "value", "before", "after", "gain", "concept"]


def attribute_changes(oracle: torch.nn.Module, before: torch.Tensor, after: torch.Tensor,
                      shapes: tuple[str, ...]) -> pd.DataFrame:
    """Per categorical attribute the oracle reads (shape included), over the same images `before` and `after` an
    edit ([0, 1], (N, 3, H, W), in the same order): the share of images whose reading changes (`changed`), and
    the value whose share rises most (`value`, its share `before` and `after`, `gain` = after - before) with its
    vocabulary concept; the oracle's validity too (`valid`: the share it reads as a clean world image). Sorted by
    `changed`, most first."""
    if before.shape != after.shape:
        raise ValueError(f"before and after must be the same images, got shapes {tuple(before.shape)} and "
                         f"{tuple(after.shape)}")
    read_before, read_after = read_attributes(oracle, before, shapes), read_attributes(oracle, after, shapes)
    rows = []
    for attribute, values in head_layout(shapes):
        share_before = read_before[attribute].value_counts(normalize=True).reindex(values, fill_value=0.0)
        share_after = read_after[attribute].value_counts(normalize=True).reindex(values, fill_value=0.0)
        gain = share_after - share_before
        value = str(gain.idxmax())
        rows.append({"attribute": attribute, "changed": float((read_before[attribute] != read_after[attribute]).mean()),
                     "value": value, "before": float(share_before[value]), "after": float(share_after[value]),
                     "gain": float(gain[value]), "concept": _concept(attribute, value)})
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS).sort_values("changed", ascending=False, kind="stable"
                                                                 ).reset_index(drop=True)


def _concept(attribute: str, value: str) -> str | None:
    """The vocabulary concept of an oracle reading: "a square", "a tag"; None for validity and absences."""
    if attribute == "shape":
        return f"a {value}"
    return None if attribute == "valid" else world_concept(attribute, value)
