"""The world's concept vocabulary: every shape and present attribute value, named as a report shows them.

Absences ("no tag") are left out, as in every vocabulary (see `preimage.analysis.concepts.vocabulary`).
"""

from __future__ import annotations

from collections.abc import Sequence

from preimage.analysis.concepts.vocabulary import Concept
from preimage.world.attributes import CATEGORICAL, TEXTURE_ADJECTIVE, caption

ABSENT_VALUES = {("tag", "absent")}


def world_concept(attribute: str, value: str) -> str | None:
    """The concept name of a world attribute value ("a purple background"); None for absences."""
    if attribute not in CATEGORICAL or value not in CATEGORICAL[attribute]:
        raise ValueError(f"world attribute {attribute}={value!r} is unknown; expected one of {CATEGORICAL}")
    if (attribute, value) in ABSENT_VALUES:
        return None
    if attribute == "fg_colour":
        return f"a {value} shape"
    if attribute == "bg_colour":
        return f"a {value} background"
    if attribute == "texture":
        return f"a {TEXTURE_ADJECTIVE[value]} background"
    return "a tag"


def world_vocabulary(shapes: Sequence[str]) -> list[Concept]:
    """Every shape and every present attribute value, with the partial captions the world CLIP learned."""
    concepts = [Concept(f"a {shape}", caption({"shape": shape}, frozenset({"shape"}))) for shape in shapes]
    for attribute, values in CATEGORICAL.items():
        for value in values:
            name = world_concept(attribute, value)
            if name is not None:
                concepts.append(Concept(name, caption({attribute: value}, frozenset({attribute}))))
    return concepts
