"""The concept step's glue: its vocabulary, the names of its models in caches, its settings from the config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

from preimage.analysis.concepts.vocabulary import (
    BUILTIN_VOCABULARIES,
    Concept,
    load_vocabulary,
)
from preimage.pipeline.models import WORLD, model_dir, model_settings
from preimage.world.vocabulary import world_vocabulary

Settings = TypeVar("Settings")
WORLD_VOCABULARY = "world"


def concept_vocabulary(spec: str, template: str = "{}", shapes: Sequence[str] | None = None) -> list[Concept]:
    """Resolve `concepts.vocabulary`: "world" (needs the world's `shapes`), a built-in name or a file path."""
    if spec == WORLD_VOCABULARY:
        if not shapes:
            raise ValueError("concepts.vocabulary 'world' needs the world's shapes (config world.shapes)")
        return world_vocabulary(shapes)
    if spec not in BUILTIN_VOCABULARIES and not Path(spec).is_file():
        raise FileNotFoundError(f"concepts.vocabulary {spec!r}: not {WORLD_VOCABULARY!r}, not a built-in "
                                f"({', '.join(BUILTIN_VOCABULARIES)}) and no such file")
    return load_vocabulary(spec, template)


def model_identity(config: dict, kind: str) -> str:
    """What names a model (`models.<kind>`) in caches: the world model's folder, or the configured source
    with its weight file; embeddings made by another model are recomputed."""
    settings = model_settings(config, kind)
    if settings["source"] == WORLD:
        return model_dir(config, kind)
    weights = settings.get("pretrained_file")
    return settings["source"] + (f" + {weights}" if weights else "")


def settings_from_config(cls: type[Settings], section: Mapping, where: str) -> Settings:
    """A settings dataclass from a config section; an unknown key raises naming it and the allowed ones."""
    allowed = sorted(f.name for f in fields(cls))
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {allowed}")
    return cls(**section)
