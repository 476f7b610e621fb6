"""Tell a shortcut from its mirror images in the other classes' groups.

When a model calls striped images triangles, the other classes' invariant sets avoid stripes, so whatever
replaces stripes (a plain or a dotted background) looks enriched there, and the model's calls on the reference
follow it too: squares "need" a plain background only because stripes would turn them into triangles. Scored one
group at a time, such a mirror image is flagged like the shortcut itself.

Across class groups, a flag X of group B is *explained* by a flag Y of another group A (another concept) when
X is an alternative to Y (their CLIP similarities over the reference correlate at most ALTERNATIVE_CORRELATION:
another background texture or colour, not a tag beside a background), and among the images without Y, X is no
longer flagged in B, while among the images without X, Y still is flagged in A: removing the shortcut removes its
mirror, not the other way round. "Without Y" keeps the members and reference images less like Y than the
reference's median image, scored exactly as the group was. A comparison left with too few images there explains
nothing. The alternative condition matters where two shortcuts interact: the model's calls only waver on a purple
triangle when a tag pulls it towards squares, so without tags the purple shortcut has no call left to move, yet it
is no mirror of the tag.

Findings and mirrors are resolved from the flags nothing explains: those are findings; a flag a finding
explains is a mirror of it; a flag explained only by mirrors is a finding. Flags left in a cycle stay findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
from preimage.analysis.concepts.spurious import SpuriousSettings, score_concepts

WITHOUT_QUANTILE = 0.5  # "without Y": less like Y than this quantile of the reference's similarities to Y
ALTERNATIVE_CORRELATION = -0.2  # X can mirror Y only when CLIP's similarities to them correlate at most this

Flag = tuple[str, str]  # (group, concept)


@dataclass(frozen=True)
class ClassGroupEvidence:
    """What a class group was scored on: its members' and the reference's CLIP embeddings, each member's set and
    the model's call on each reference image (whether it is the group's class)."""

    group: str
    core: str
    members: np.ndarray
    member_sets: np.ndarray
    reference: np.ndarray
    reference_calls: np.ndarray

    def flags_without(self, concept: np.ndarray, vocabulary: EmbeddedVocabulary, candidates: Sequence[bool],
                      settings: SpuriousSettings) -> np.ndarray | None:
        """(T,) the group's flags among the images less like `concept` (a text embedding) than the reference's
        median image; None when too few members or reference images are left to score."""
        cut = np.quantile(self.reference @ concept, WITHOUT_QUANTILE)
        kept_members, kept_reference = self.members @ concept < cut, self.reference @ concept < cut
        if kept_members.sum() < 2 or kept_reference.sum() < 2:
            return None
        table = score_concepts(self.members[kept_members], self.reference[kept_reference], vocabulary, self.core,
                               candidates, self.member_sets[kept_members], settings,
                               self.reference_calls[kept_reference])
        return table["flagged"].to_numpy(dtype=bool)


def explanations(flags: Sequence[Flag], evidence: Mapping[str, ClassGroupEvidence], vocabulary: EmbeddedVocabulary,
                 candidates: Sequence[bool], settings: SpuriousSettings) -> dict[Flag, list[Flag]]:
    """For each flag, the flags of other groups (other concepts) that explain it (module docstring)."""
    index = {concept: i for i, concept in enumerate(vocabulary.concepts)}
    cache: dict[Flag, np.ndarray | None] = {}

    def flagged_without(flag: Flag, without: str) -> bool | None:
        group, concept = flag
        if (group, without) not in cache:
            cache[group, without] = evidence[group].flags_without(vocabulary.text[index[without]], vocabulary,
                                                                  candidates, settings)
        flags_there = cache[group, without]
        return None if flags_there is None else bool(flags_there[index[concept]])

    def alternatives(flag: Flag, other: Flag) -> bool:
        reference = evidence[flag[0]].reference
        similarity = reference @ vocabulary.text[[index[flag[1]], index[other[1]]]].T
        return bool(np.corrcoef(similarity.T)[0, 1] <= ALTERNATIVE_CORRELATION)

    explained: dict[Flag, list[Flag]] = {}
    for flag in flags:
        for other in flags:
            if other[0] == flag[0] or other[1] == flag[1] or not alternatives(flag, other):
                continue
            if flagged_without(flag, other[1]) is False and flagged_without(other, flag[1]) is True:
                explained.setdefault(flag, []).append(other)
    return explained


def resolve_mirrors(flags: Sequence[Flag], explained: Mapping[Flag, Sequence[Flag]]) -> dict[Flag, list[Flag]]:
    """The mirrors among `flags`, each with the findings that explain it; every other flag is a finding."""
    findings: set[Flag] = set()
    mirrors: dict[Flag, list[Flag]] = {}
    undecided = set(flags)
    while undecided:
        new_findings = {f for f in undecided if all(e in mirrors for e in explained.get(f, ()))}
        new_mirrors = {f: [e for e in explained.get(f, ()) if e in findings] for f in undecided - new_findings}
        new_mirrors = {f: by for f, by in new_mirrors.items() if by}
        if not new_findings and not new_mirrors:
            break  # a cycle of flags explaining each other: they stay findings
        findings |= new_findings
        mirrors.update(new_mirrors)
        undecided -= new_findings | set(new_mirrors)
    return mirrors


def mark_mirrors(scores: pd.DataFrame, evidence: Mapping[str, ClassGroupEvidence], vocabulary: EmbeddedVocabulary,
                 candidates: Sequence[bool], settings: SpuriousSettings) -> pd.DataFrame:
    """The spurious-feature table of every group with column `mirror_of` ("a striped background (triangle)" for
    a mirror, else ""): a mirror's flag is withdrawn, since it is reported under the finding it mirrors. Only the
    class groups in `evidence` take part; the others' rows pass unchanged."""
    flagged = scores[scores["flagged"] & scores["group"].isin(list(evidence))]
    flags = list(zip(flagged["group"], flagged["concept"]))
    mirrors = resolve_mirrors(flags, explanations(flags, evidence, vocabulary, candidates, settings))
    named = {flag: "; ".join(f"{concept} ({group})" for group, concept in by) for flag, by in mirrors.items()}
    keys = list(zip(scores["group"], scores["concept"]))
    out = scores.assign(mirror_of=[named.get(key, "") for key in keys])
    out["flagged"] = scores["flagged"].to_numpy() & (out["mirror_of"] == "").to_numpy()
    return out
