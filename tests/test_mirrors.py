"""Mirror images of a shortcut in the other classes' groups: told apart from the finding they mirror."""

from __future__ import annotations

import numpy as np
import pandas as pd

from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
from preimage.analysis.concepts.mirrors import ClassGroupEvidence, mark_mirrors, resolve_mirrors
from preimage.analysis.concepts.spurious import SpuriousSettings, score_concepts
from preimage.analysis.concepts.vocabulary import extrinsic_mask

SHAPES = ["circle", "square", "triangle"]
TEXTURES = ["a plain background", "a dotted background", "a striped background"]
CONCEPTS = [*(f"a {s}" for s in SHAPES), *TEXTURES, "a red shape"]
DIM = len(CONCEPTS) + 8
FAST = SpuriousSettings(permutations=200)


def _vocabulary() -> EmbeddedVocabulary:
    axes = np.eye(DIM, dtype=np.float32)
    return EmbeddedVocabulary(concepts=tuple(CONCEPTS), prompts=tuple(CONCEPTS), text=axes[: len(CONCEPTS)],
                              classes=tuple(SHAPES), class_texts=tuple(SHAPES), class_text=axes[:3], logit_scale=30.0)


def _striped_world(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of n images (a shape, one of three textures, sometimes red) and the model's calls: striped
    images are called triangles whatever their shape, 80 % of the time."""
    shapes, textures = rng.integers(0, 3, n), rng.integers(0, 3, n)
    x = rng.normal(0, 0.25, (n, DIM))
    x[np.arange(n), shapes] += 1.0
    x[np.arange(n), 3 + textures] += 0.8
    x[:, 6] += 0.8 * (rng.random(n) < 0.25)
    calls = np.where((textures == 2) & (rng.random(n) < 0.8), 2, shapes)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), calls


def _scored_groups(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, ClassGroupEvidence]]:
    """Each class's group (members: prior images the model calls the class, in three sets) scored against a
    reference of the same world, with the evidence the mirror test needs."""
    vocabulary = _vocabulary()
    candidates = extrinsic_mask(vocabulary.concepts, SHAPES)
    reference, reference_calls = _striped_world(rng, 600)
    pool, pool_calls = _striped_world(rng, 3000)
    tables, evidence = [], {}
    for k, shape in enumerate(SHAPES):
        members = pool[pool_calls == k][:150]
        sets = (np.arange(len(members)) % 3).astype(str)
        evidence[shape] = ClassGroupEvidence(shape, shape, members, sets, reference, reference_calls == k)
        table = score_concepts(members, reference, vocabulary, shape, candidates, sets, FAST, reference_calls == k)
        tables.append(table.assign(group=shape, kind="class", **{"class": shape}))
    return pd.concat(tables, ignore_index=True), evidence


def test_a_shortcuts_mirror_images_are_withdrawn_and_named_after_it():
    scores, evidence = _scored_groups(np.random.default_rng(0))
    before = scores[scores["flagged"]].set_index(["group", "concept"]).index.tolist()
    assert ("triangle", "a striped background") in before
    mirrored = [flag for flag in before if flag[0] != "triangle"]
    assert mirrored and {concept for _, concept in mirrored} <= {"a plain background", "a dotted background"}
    vocabulary = _vocabulary()
    marked = mark_mirrors(scores, evidence, vocabulary, extrinsic_mask(vocabulary.concepts, SHAPES), FAST)
    after = marked[marked["flagged"]].set_index(["group", "concept"]).index.tolist()
    assert after == [("triangle", "a striped background")]
    by_flag = marked.set_index(["group", "concept"])["mirror_of"]
    assert all(by_flag[flag] == "a striped background (triangle)" for flag in mirrored)
    pd.testing.assert_frame_equal(marked.drop(columns=["mirror_of", "flagged"]), scores.drop(columns="flagged"))


def test_groups_outside_the_evidence_pass_unchanged():
    scores, evidence = _scored_groups(np.random.default_rng(0))
    vocabulary = _vocabulary()
    only_square = {"square": evidence["square"]}  # the shortcut's own group takes no part: nothing explains
    marked = mark_mirrors(scores, only_square, vocabulary, extrinsic_mask(vocabulary.concepts, SHAPES), FAST)
    assert (marked["flagged"] == scores["flagged"]).all() and (marked["mirror_of"] == "").all()


def test_resolution_starts_from_flags_nothing_explains():
    a, b, c, d, e = ("A", "y"), ("B", "x"), ("C", "z"), ("D", "u"), ("E", "v")
    # b mirrors the finding a; c is explained only by the mirror b, so it stays a finding; d and e form a cycle
    explained = {b: [a], c: [b], d: [e], e: [d]}
    assert resolve_mirrors([a, b, c, d, e], explained) == {b: [a]}
    # a flag explained by a finding and by a mirror is a mirror of the finding only
    assert resolve_mirrors([a, b, c], {b: [a], c: [a, b]}) == {b: [a], c: [a]}
    assert resolve_mirrors([], {}) == {}
