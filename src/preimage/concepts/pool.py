"""Pool the cached embeddings of several invariant sets into one table, e.g. all sets of a class.

A set's rows carry what its members.parquet says about the set (source class, objective kind,
counterfactual) and `path`, the PNG's location as reachable from the working directory, so reports and
figures can show any pooled member.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from preimage.concepts.embeddings import MEMBERS_FILE

SET_COLUMNS = ["source_class", "objective_kind", "counterfactual"]
# Objective kinds whose invariant set keeps a class decision; their class is the set's core concept.
CLASS_KINDS = ("label", "logits", "probs")


def read_pool(set_dirs: Sequence[str | Path], embedding_files: Sequence[str | Path]) -> pd.DataFrame:
    """Embedding rows of every set, with the set's columns and each image's `path`."""
    if len(set_dirs) != len(embedding_files):
        raise ValueError(f"got {len(set_dirs)} set directories but {len(embedding_files)} embedding files")
    if not set_dirs:
        raise ValueError("set_dirs: expected at least one set")
    parts = []
    for directory, file in zip(set_dirs, embedding_files):
        rows = pd.read_parquet(file)
        info = pd.read_parquet(Path(directory) / MEMBERS_FILE, columns=SET_COLUMNS).head(1)
        if info.empty or rows.empty:
            continue
        rows = rows.assign(**info.iloc[0].to_dict(), path=[str(Path(directory) / image) for image in rows["image"]])
        parts.append(rows)
    if not parts:
        raise ValueError(f"none of the {len(set_dirs)} sets has an accepted member to pool")
    return pd.concat(parts, ignore_index=True)


def core_class(pool: pd.DataFrame) -> str | None:
    """The class whose decision every pooled set keeps, or None (neuron, image-space, mixed objectives)."""
    kinds, classes = set(pool["objective_kind"]), set(pool["source_class"])
    if kinds <= set(CLASS_KINDS) and len(classes) == 1:
        return classes.pop()
    return None


def invariant_members(pool: pd.DataFrame) -> pd.DataFrame:
    """The generated members of non-counterfactual sets: images the model treats like their source."""
    keep = (pool["role"] == "member") & ~pool["counterfactual"].astype(bool)
    return pool[keep].reset_index(drop=True)
