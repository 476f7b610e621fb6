"""The vocabulary of the shortcut world: which attributes an image has and which values they take.

Categorical attributes can carry planted shortcuts; continuous ones (scale, position, rotation) are
nuisance factors that an invariant set is expected to vary freely.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")

FG_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 205, 35),
}

BG_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 25),
    "white": (235, 235, 235),
    "gray": (125, 125, 125),
    "purple": (115, 45, 135),
}

TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots")
TAGS: tuple[str, ...] = ("absent", "present")

# Attributes that a shortcut may be planted on, with their possible values (the shape is the label).
CATEGORICAL: dict[str, tuple[str, ...]] = {
    "fg_colour": tuple(FG_COLOURS),
    "bg_colour": tuple(BG_COLOURS),
    "texture": TEXTURES,
    "tag": TAGS,
}

# Uniform ranges of the continuous nuisance attributes, in normalised image coordinates [-1, 1].
CONTINUOUS: dict[str, tuple[float, float]] = {
    "scale": (0.4, 0.65),
    "x": (-0.25, 0.25),
    "y": (-0.25, 0.25),
    "rotation": (0.0, 360.0),
}


def caption(row: dict, mention: frozenset[str] | None = None) -> str:
    """Describe an image in words, e.g. "a red square with a tag on a purple striped background".

    `mention` restricts the caption to some attributes ("shape", "fg_colour", "bg_colour", "texture",
    "tag"), so a text encoder also learns the partial prompts used for zero-shot classification.
    """
    says = mention if mention is not None else frozenset({"shape", *CATEGORICAL})
    colour = f"{row['fg_colour']} " if "fg_colour" in says else ""
    noun = row["shape"] if "shape" in says else "shape"
    text = f"a {colour}{noun}"
    if "tag" in says:
        text += " with a tag" if row["tag"] == "present" else " without a tag"
    background = [row["bg_colour"]] if "bg_colour" in says else []
    if "texture" in says:
        background.append(TEXTURE_ADJECTIVE[row["texture"]])
    if background:
        text += f" on a {' '.join(background)} background"
    return text


TEXTURE_ADJECTIVE: dict[str, str] = {"plain": "plain", "stripes": "striped", "dots": "dotted"}
