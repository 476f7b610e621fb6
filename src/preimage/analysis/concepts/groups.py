"""How the concept step groups invariant sets, for rules and notebooks alike.

A *group* is the sets explained together, and its *core* the class whose decision they keep:

- kind "class": every set whose members the model calls class c, pooled: sets whose objective keeps the
  model's call on the source (label, logits or probs without a target) where the model calls the source c
  (whatever its true class: a square the model calls a circle gives members the model calls circles), and
  label counterfactuals with target c; the core is c. Both are samples of {x : model(x) = c}, and the
  counterfactuals are where the model's reliance shows most: what it takes to make a circle a square is
  what the model needs beyond the square's shape;
- kinds "moved up" and "moved down": a regression counterfactual (`kind: regression` with a `target_shift`),
  per objective, pooled over sources; no core class. Each direction is scored against the other direction's
  members (`contrast_kind`): both edit the same sources, so what the sources bring cancels and what remains is
  what moving the regressor's output up (or down) adds;
- kind "objective": any other objective (a neuron, a channel, an image-space function, a regression kept within
  its tolerance, a counterfactual on logits or probabilities), per objective, pooled over sources; no core class.

Group names become file names through `group_slug`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from preimage.engine.objectives.spec import label_target

SET_ID_SEPARATOR = "__"  # set ids are '<source_id>__<objective>__<sampler>'
CLASS_KINDS = ("label", "logits", "probs")
MOVED_UP, MOVED_DOWN = "moved up", "moved down"  # the group kinds of regression counterfactuals
SET_ID_PARTS = 3
GROUP_SCOPE = "group"  # the scope of a group's pooled clusters in the clustering tables (else a set id)


@dataclass(frozen=True)
class Group:
    """Sets explained together and the class they keep (None when they keep no class)."""

    name: str
    kind: str
    core: str | None
    set_ids: tuple[str, ...]


def group_slug(name: str) -> str:
    """A file-name-safe form of a group name ("golden retriever" -> "golden-retriever")."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-.")
    if not slug:
        raise ValueError(f"group name {name!r} has no letter or digit to name its files by")
    return slug


def objective_name(set_id: str) -> str:
    """The objective part of a set id '<source_id>__<objective>__<sampler>' (preimage.pipeline.workflow.set_ids)."""
    parts = set_id.rsplit(SET_ID_SEPARATOR, SET_ID_PARTS - 1)
    if len(parts) != SET_ID_PARTS:
        raise ValueError(f"set id {set_id!r}: expected '<source_id>__<objective>__<sampler>'")
    return parts[1]


def keeps_the_call(objective: Mapping) -> bool:
    """Whether an objective keeps the model's call on the source (label, logits or probs without a target)."""
    target = objective.get("target", "source")
    relative = "target_scale" in objective or "target_shift" in objective
    return objective.get("kind") in CLASS_KINDS and target == "source" and not relative


def regression_direction(objective: Mapping) -> str | None:
    """MOVED_UP or MOVED_DOWN for a regression counterfactual shifted up or down (`target_shift` > 0 or < 0);
    None for any other objective (an absolute target or a scale says no direction without the source's value)."""
    shift = objective.get("target_shift") if objective.get("kind") == "regression" else None
    if not shift:
        return None
    return MOVED_UP if shift > 0 else MOVED_DOWN


def contrast_kind(kind: str) -> str | None:
    """The group kind a group of `kind` is scored against instead of the reference: a regression
    counterfactual's opposite direction; None (the reference) for every other kind."""
    return {MOVED_UP: MOVED_DOWN, MOVED_DOWN: MOVED_UP}.get(kind)


def set_group(objective: Mapping, name: str, called_class: str) -> tuple[str, str, str | None]:
    """(group name, kind, core class) of a set with objective spec `objective` called `name`, from a source
    the model calls `called_class`."""
    target = label_target(objective)
    if keeps_the_call(objective):
        return called_class, "class", called_class
    if isinstance(target, str) and target != "source":
        return target, "class", target
    return name, regression_direction(objective) or "objective", None


def concept_groups(set_ids: Sequence[str], called_class: Callable[[str], str], objectives: Mapping[str, Mapping]
                   ) -> dict[str, Group]:
    """Every group of the run by slug, given the class the model calls each set's source; a group name shared
    by two kinds, or two names sharing a slug, is an error (rename the objective)."""
    found: dict[str, tuple[str, str, str | None]] = {}
    members: dict[str, list[str]] = {}
    for set_id in sorted(set_ids):
        name = objective_name(set_id)
        if name not in objectives:
            raise ValueError(f"set {set_id!r}: objective {name!r} is not in config sets.objectives "
                             f"{sorted(objectives)}")
        key = set_group(objectives[name], name, called_class(set_id))
        slug = group_slug(key[0])
        if found.setdefault(slug, key) != key:
            raise ValueError(f"groups {found[slug]} and {key} share the file name {slug!r}; rename the objective")
        members.setdefault(slug, []).append(set_id)
    return {slug: Group(*found[slug], tuple(members[slug])) for slug in sorted(found)}
