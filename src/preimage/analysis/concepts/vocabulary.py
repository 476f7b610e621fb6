"""Concept vocabularies: the words explanations may use, from a text file or a built-in list.

A vocabulary file lists one concept per line, as ``name`` or ``name | prompt``: the name is what a
report shows ("a tag"), the prompt what CLIP reads ("a shape with a tag"). Lines without a prompt use
`template` (e.g. "a photo of {}.") around the name. Blank lines and ``#`` comments are skipped.

Vocabularies list the *presence* of things only. CLIP scores negations poorly, and the absence of a
concept in one class's invariant set is the mirror image of its presence in another class's set, so
listing absences would report every shortcut twice (once as "no tag" for each other class).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BUILTIN_VOCABULARIES = ("common",)
SEPARATOR = "|"


@dataclass(frozen=True)
class Concept:
    """A named visual concept and the text CLIP embeds for it."""

    name: str
    prompt: str


def parse_vocabulary(text: str, template: str = "{}", source: str = "vocabulary") -> list[Concept]:
    """Concepts of a vocabulary file's text; duplicate names or empty entries raise naming the line."""
    if "{}" not in template:
        raise ValueError(f"prompt template {template!r}: must contain '{{}}' where the concept name goes")
    concepts: list[Concept] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, prompt = (part.strip() for part in line.partition(SEPARATOR))
        if not name or (SEPARATOR in line and not prompt):
            raise ValueError(f"{source}, line {number}: expected 'name' or 'name | prompt', got {line!r}")
        if name in seen:
            raise ValueError(f"{source}, line {number}: concept {name!r} is listed twice")
        seen.add(name)
        concepts.append(Concept(name, prompt or template.format(name)))
    if not concepts:
        raise ValueError(f"{source}: no concepts found; expected one 'name' or 'name | prompt' per line")
    return concepts


def format_vocabulary(concepts: Iterable[Concept]) -> str:
    """The file text of a vocabulary, every line with its explicit prompt."""
    return "".join(f"{c.name} {SEPARATOR} {c.prompt}\n" for c in concepts)








def _words(text: str) -> set[str]:
    """Lower-case words with a plural "s" dropped, so "retrievers" matches the class "retriever"."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in re.findall(r"[a-z0-9]+", text.lower())}


def names_class(concept: str, class_name: str) -> bool:
    """Whether a concept names a class: every word of the class name is in it."""
    return bool(_words(class_name)) and _words(class_name) <= _words(concept)


def extrinsic_mask(concepts: Sequence[str], class_names: Sequence[str]) -> list[bool]:
    """For each concept, True unless it names a class (any of `class_names`: class texts and synonyms). A
    class is never its own shortcut, and another class's name is a confusion, not a spurious feature."""
    return [not any(names_class(c, name) for name in class_names) for c in concepts]


def load_vocabulary(spec: str, template: str = "{}") -> list[Concept]:
    """A built-in vocabulary by name ("common") or a vocabulary file by path."""
    if spec in BUILTIN_VOCABULARIES:
        text = resources.files(__package__).joinpath("vocabularies", f"{spec}.txt").read_text()
        return parse_vocabulary(text, template, source=f"built-in vocabulary {spec!r}")
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"vocabulary {spec!r}: not a built-in ({', '.join(BUILTIN_VOCABULARIES)}) and no such file"
        )
    return parse_vocabulary(path.read_text(), template, source=str(path))
