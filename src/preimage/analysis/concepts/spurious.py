"""Rank vocabulary concepts by how much a model's decision depends on them, from generated images alone.

A group of invariant sets (all sets of a class, or of one neuron objective) is compared with the
reference: unconstrained samples of the same prior. For a class c, CLIP's zero-shot class probabilities
split every image, member or reference alike, into strata:

- *recognised*: CLIP's most likely class is c;
- *absent*: CLIP gives c less than `absent_fraction` of chance (1 / number of classes);
- anything between is left out of both comparisons.

Selecting members and reference by the same rule keeps the comparison fair: CLIP's own blind spots (say
it misses green squares) thin out both sides alike instead of making "green" look enriched, and
concepts that merely co-occur with the shape in CLIP's space cancel. For each concept c' with CLIP
similarity s(x, c'), as the rank effect 2 * AUROC - 1 in [-1, 1] of members against reference:

- enrichment: in the recognised stratum. "Among images of a square, which concepts does the model's
  square set have more often?"
- reliance: in the absent stratum. "Among images that are not squares, which concepts make the model
  keep calling them square?" A concept the model falls back on when the class itself is not visible is
  one it relies on. Measured only with at least `min_absent` members and reference images there.
- decision: on the reference alone, in each stratum, the reference images the model itself calls c
  against those it does not. The reference is a rejection sample of every class at once, free of the
  guidance: "among unconstrained images that look alike to CLIP, which concepts go with the model's
  call?" Measured in a stratum with at least `min_absent` images on each side of the model's call.
- extrinsicness: concepts naming an explained class (the class itself, its synonyms, another class)
  are never candidates: a class is not its own shortcut, and another class is a confusion.

The score is the mean of reliance and decision (the mean of its strata), the effects that read the
model's own calls, where either is measured; enrichment alone where neither is (no core class, thin strata).
Enrichment is shown but left out of a class's score: among images CLIP already recognises as the class, the
model keeps its call whether or not a shortcut is there, so an added shortcut (a tag that makes squares) barely
enriches the sets, while concepts the guidance happens to pile up do. A candidate is flagged when its score exceeds both `min_effect` and the (1 - alpha) quantile
of the largest candidate score when member/reference labels and the model's calls on the reference are
shuffled within strata: the permutation null keeps the chance of flagging anything in a group with no
real enrichment at alpha, and the minimum effect keeps small but significant shifts (e.g. other
backgrounds rising when one background is avoided) from being flagged. A class group's flag must also
be *confirmed*: its decision effect measured and at least `min_effect`, and its *call rate* at least
`min_call_rate`. Guided sampling follows the classifier's gradient, which can find concepts that move the
decision only in images the prior rarely draws (on the shortcut world, tagged triangle-like shapes the model
calls crosses); confirmation asks that the model's calls on plain prior samples agree. The call rate is the
size of that agreement: in each stratum of the reference, the share of images the model calls the class among
those CLIP sees the concept in, minus the share among the others (the mean over the strata). The decision
effect is a rank effect, as large when a dozen stray calls of a thousand images happen to be green as when
green flips half of them; a shortcut changes how often the model calls the class, the stray calls do not.
When the model calls too few reference images differently from CLIP, there is no decision to measure and so no
flag: raise `reference.members` when classes are many. Without a core class (neuron objectives), or with fewer
than `min_reference` recognised reference images, all members are compared with the whole reference (comparison
"all"), reliance, decision and call rate are not measured, and flags rest on enrichment alone. Candidates are
ranked by score, the confirmed ones first: a concept the model's calls on the reference do not bear out ranks below
every one they do, so the top of a group's table (and its hit@1) is what the model relies on.

A regression counterfactual's group ("moved up" or "moved down") is scored against the other direction's members
by enrichment, and its flags are confirmed on the reference as a class group's are (`confirm_on_reference`), the
regressor's output taking the place of the call: an image counts as "called" when its output lies beyond the
median of the reference's outputs in the group's direction (`output_calls`). A concept that only the guidance piles
up in the edits, or that the edits of one direction happen to keep, leaves the regressor's output on plain prior
samples unmoved, and its flag is withdrawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from preimage.analysis.concepts.clustering import zero_shot_probabilities
from preimage.analysis.concepts.embeddings import (
    EmbeddedVocabulary,
    embedding_matrix,
    generated_members,
)
from preimage.analysis.concepts.groups import Group
from preimage.analysis.concepts.predictions import output_column
from preimage.analysis.concepts.statistics import (
    auroc,
    auroc_from_ranks,
    call_rate_difference,
    call_rate_variance,
    flag,
    null_threshold,
    permuted_masks,
    pooled_ranks,
    presence_threshold,
    rank_candidates,
)
from preimage.analysis.concepts.vocabulary import extrinsic_mask

RECOGNISED, ABSENT, LEFT_OUT = 0, 1, -1
@dataclass(frozen=True)
class SpuriousSettings:
    """Knobs of the scorer; config concepts.spurious maps onto these fields."""

    permutations: int = 500
    alpha: float = 0.05
    min_effect: float = 0.2
    min_call_rate: float = 0.1
    confidence: float = 0.9
    """Level of the call rate's interval (columns call_rate_low and call_rate_high)."""
    min_reference: int = 20
    min_absent: int = 10
    absent_fraction: float = 0.5
    evidence: int = 6
    seed: int = 0
    mirrors: bool = True
    """Across class groups, withdraw the flags that are mirror images of another class's finding
    (`preimage.analysis.concepts.mirrors`); the per-group scores above never read it."""


def strata(images: np.ndarray, vocabulary: EmbeddedVocabulary, core: str, absent_fraction: float) -> np.ndarray:
    """(N,) RECOGNISED, ABSENT or LEFT_OUT for each image, from CLIP's zero-shot class probabilities."""
    k = vocabulary.class_index(core)
    probability = zero_shot_probabilities(images, vocabulary.class_text, vocabulary.logit_scale)
    absent = probability[:, k] < absent_fraction / len(vocabulary.classes)
    return np.where(probability.argmax(1) == k, RECOGNISED, np.where(absent, ABSENT, LEFT_OUT))


def score_concepts(
    members: np.ndarray,
    reference: np.ndarray,
    vocabulary: EmbeddedVocabulary,
    core: str | None,
    candidates: Sequence[bool],
    member_sets: Sequence[str],
    settings: SpuriousSettings = SpuriousSettings(),
    reference_calls: Sequence[bool] | None = None,
) -> pd.DataFrame:
    """One row per vocabulary concept: enrichment, reliance, decision, score, rank, threshold and flag.

    `members` (n, D) and `reference` (m, D) are unit-norm CLIP embeddings; `core` is the class the sets
    keep (None for neuron objectives); `candidates` marks extrinsic concepts; `member_sets` names each
    member's set, for `set_consistency`: the share of sets whose members score higher than the reference
    (AUROC > 0.5, recognised stratum), since a shortcut is kept by every set and a source's own look
    only by its set. `reference_calls` (m,) marks the reference images the model calls `core`; a class
    group needs it, for the decision effect.
    """
    candidates = np.asarray(candidates, dtype=bool)
    if len(candidates) != len(vocabulary.concepts):
        raise ValueError(f"candidates: expected one flag per concept ({len(vocabulary.concepts)}), "
                         f"got {len(candidates)}")
    if len(members) < 2 or len(reference) < 2:
        raise ValueError(f"need at least 2 members and 2 reference images, got {len(members)} and {len(reference)}")
    if len(member_sets) != len(members):
        raise ValueError(f"member_sets: expected one set name per member ({len(members)}), got {len(member_sets)}")
    if core is not None and reference_calls is None:
        raise ValueError(f"reference_calls: class {core!r} needs the model's call on every reference image")
    if reference_calls is not None and len(reference_calls) != len(reference):
        raise ValueError(f"reference_calls: expected one call per reference image ({len(reference)}), "
                         f"got {len(reference_calls)}")
    images = np.concatenate([members, reference])
    is_member = np.arange(len(images)) < len(members)
    stratum, comparison = _stratify(images, is_member, vocabulary, core, settings)
    similarity = images @ vocabulary.text.T
    stratified = comparison == "stratified"
    calls = np.asarray(reference_calls, dtype=bool) if stratified else np.zeros(len(reference), dtype=bool)
    in_sets = _StratumEffects(similarity, stratum, is_member, {RECOGNISED: 2, ABSENT: settings.min_absent})
    decision = _StratumEffects(similarity[len(members):], stratum[len(members):], calls,
                               {RECOGNISED: settings.min_absent, ABSENT: settings.min_absent})

    def effects(masks: np.ndarray, call_masks: np.ndarray) -> np.ndarray:
        """(P, 3, T) enrichment, reliance and decision effects; NaN where not measured."""
        return np.concatenate([in_sets(masks), decision.mean(call_masks)[:, None]], axis=1)

    observed = effects(is_member[None], calls[None])[0]
    score = combined_score(observed[None])[0]
    rng = np.random.default_rng(settings.seed)
    null_members = permuted_masks(is_member, stratum, settings.permutations, rng)
    null_calls = permuted_masks(calls, stratum[len(members):], settings.permutations, rng)
    threshold = null_threshold(combined_score(effects(null_members, null_calls)), candidates, settings.alpha)
    if stratified:
        rate, half_width = call_rate(similarity[len(members):], stratum[len(members):], calls, settings.min_absent,
                                     settings.confidence)
        confirmed = confirms(observed[2], rate, settings)
    else:
        rate = half_width = np.full(len(candidates), np.nan)
        confirmed = np.ones(len(candidates), dtype=bool)
    count = {(s, m): int(((stratum == s) & (is_member == m)).sum())
             for s in (RECOGNISED, ABSENT) for m in (True, False)}
    return pd.DataFrame({
        "concept": vocabulary.concepts,
        "extrinsic": candidates,
        "enrichment": observed[RECOGNISED],
        "reliance": observed[ABSENT],
        "decision": observed[2],
        **call_rate_columns(rate, half_width, settings),
        "score": np.where(candidates, score, np.nan),
        "rank": rank_candidates(score, candidates, confirmed),
        "null_threshold": threshold,
        "threshold": max(threshold, settings.min_effect),
        "confirmed": confirmed,
        "flagged": flag(score, candidates, threshold, settings.min_effect) & confirmed,
        "members": len(members),
        "reference": len(reference),
        "comparison": comparison,
        "recognised_members": count[RECOGNISED, True],
        "recognised_reference": count[RECOGNISED, False],
        "absent_members": count[ABSENT, True],
        "absent_reference": count[ABSENT, False],
        "called_reference": int(calls.sum()),
        "set_consistency": _set_consistency(similarity, stratum, np.asarray(member_sets)),
    })


def confirms(decision: np.ndarray, rate: np.ndarray, settings: SpuriousSettings) -> np.ndarray:
    """(T,) whether the model's calls on the reference confirm each concept: its decision effect at least
    `min_effect` and its call rate at least `min_call_rate` (NaN confirms nothing)."""
    return (decision >= settings.min_effect) & (rate >= settings.min_call_rate)


def call_rate_columns(rate: np.ndarray, half_width: np.ndarray, settings: SpuriousSettings) -> dict[str, object]:
    """The score table's call-rate columns: the rate, its `confidence` interval and that level."""
    return {"call_rate": rate, "call_rate_low": rate - half_width, "call_rate_high": rate + half_width,
            "call_rate_confidence": settings.confidence}


def combined_score(effects: np.ndarray) -> np.ndarray:
    """(P, T) scores from (P, 3, T) enrichment, reliance and decision effects: the mean of reliance and decision
    where either is measured (they read the model's calls), else enrichment (module docstring)."""
    calls = effects[:, [ABSENT, 2]]
    if np.isnan(calls).all():
        return effects[:, RECOGNISED]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a concept with neither measured stays NaN
        return np.nanmean(calls, axis=1)


def call_rate(similarity: np.ndarray, stratum: np.ndarray, calls: np.ndarray, least: int,
              confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(T,) how much more often the model calls the class on reference images that show each concept than on those
    that do not, among images CLIP sees alike, and the half-width of its `confidence` interval: the mean over the
    RECOGNISED and ABSENT strata of the difference in call rates (its variance `call_rate_variance`, the strata
    independent), a stratum counted when each side of the concept's presence (`presence_threshold` over the whole
    reference) holds at least `least` images there; NaN where none does."""
    present = similarity > presence_threshold(similarity)
    rows = [stratum == s for s in (RECOGNISED, ABSENT)]
    differences = np.stack([call_rate_difference(present[r], calls[r], least) for r in rows])
    variances = np.stack([call_rate_variance(present[r], calls[r]) for r in rows])
    measured = ~np.isnan(differences)
    strata_measured = measured.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(measured, differences, 0).sum(0) / strata_measured
        spread = np.sqrt(np.where(measured, variances, 0).sum(0)) / strata_measured
    return rate, norm.ppf(0.5 + confidence / 2) * spread


class _StratumEffects:
    """Rank effects 2 * AUROC - 1 of a mask's rows against the other rows, per stratum, for any shuffle of
    the mask; a stratum is measured when each side of the mask holds at least its `least` rows there."""

    def __init__(self, similarity: np.ndarray, stratum: np.ndarray, mask: np.ndarray, least: Mapping[int, int]) -> None:
        self.rows = {s: stratum == s for s, n in least.items()
                     if min(((stratum == s) & mask).sum(), ((stratum == s) & ~mask).sum()) >= n}
        self.ranks = {s: pooled_ranks(similarity[rows]) for s, rows in self.rows.items()}
        self.concepts = similarity.shape[1]

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """(P, 2, T) effects in RECOGNISED and ABSENT for (P, N) shuffles; NaN where not measured."""
        out = np.full((len(masks), 2, self.concepts), np.nan)
        for s, rows in self.rows.items():
            out[:, s] = 2 * auroc_from_ranks(self.ranks[s], masks[:, rows]) - 1
        return out

    def mean(self, masks: np.ndarray) -> np.ndarray:
        """(P, T) mean effect over the measured strata; NaN when none is."""
        if not self.rows:
            return np.full((len(masks), self.concepts), np.nan)
        return self(masks)[:, list(self.rows)].mean(axis=1)


def _stratify(images: np.ndarray, is_member: np.ndarray, vocabulary: EmbeddedVocabulary, core: str | None,
              settings: SpuriousSettings) -> tuple[np.ndarray, str]:
    """Strata of all images and the comparison's name; everything in RECOGNISED ("all": compare all with
    all) when stratifying is impossible (no core class) or too thin (few recognised images)."""
    everything = (np.full(len(images), RECOGNISED), "all")
    if core is None:
        return everything
    stratum = strata(images, vocabulary, core, settings.absent_fraction)
    recognised = stratum == RECOGNISED
    if recognised[~is_member].sum() < settings.min_reference or recognised[is_member].sum() < 2:
        return everything
    return stratum, "stratified"


def _set_consistency(similarity: np.ndarray, stratum: np.ndarray, member_sets: np.ndarray) -> np.ndarray:
    """(T,) share of sets whose recognised members score higher than the recognised reference."""
    n, recognised = len(member_sets), stratum == RECOGNISED
    members, sets = similarity[:n][recognised[:n]], member_sets[recognised[:n]]
    reference = similarity[n:][recognised[n:]]
    if not len(members):
        return np.full(similarity.shape[1], np.nan)
    return np.mean([auroc(members[sets == s], reference) > 0.5 for s in np.unique(sets)], axis=0)


def score_group(
    pool: pd.DataFrame,
    reference: pd.DataFrame,
    vocabulary: EmbeddedVocabulary,
    group: Group,
    synonyms: Mapping[str, Sequence[str]] | None = None,
    settings: SpuriousSettings = SpuriousSettings(),
    reference_predictions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score every concept for one group's embedding table (all its sets) against the reference's.

    Adds the group's name, kind and core class, and the evidence: paths of the members scoring highest
    on each concept. Concepts naming any of the classifier's classes (or a synonym) are not candidates;
    without a core class every concept is. A class group needs `reference_predictions`, the model's
    predicted class (column prediction) of every reference image (column image).
    """
    members, reference = generated_members(pool), generated_members(reference)
    if members.empty:
        raise ValueError(f"group {group.name!r}: no accepted member to score")
    everything = [True] * len(vocabulary.concepts)
    candidates = extrinsic_mask(vocabulary.concepts, vocabulary.class_names(synonyms)) if group.core else everything
    calls = None if group.core is None else called(reference, reference_predictions, group.core)
    member_embeddings = embedding_matrix(members)
    table = score_concepts(member_embeddings, embedding_matrix(reference), vocabulary, group.core, candidates,
                           members["set_id"].to_numpy(), settings, calls)
    top = np.argsort(-(member_embeddings @ vocabulary.text.T), axis=0, kind="stable")[: settings.evidence]
    table.insert(0, "group", group.name)
    table.insert(1, "kind", group.kind)
    table.insert(2, "class", group.core)
    table["evidence"] = [members["path"].to_numpy()[top[:, t]].tolist() for t in range(len(table))]
    return table


def confirm_on_reference(scores: pd.DataFrame, reference: np.ndarray, calls: np.ndarray,
                         vocabulary: EmbeddedVocabulary, settings: SpuriousSettings = SpuriousSettings()) -> pd.DataFrame:
    """`scores` (a group's table from `score_group`, scored without the model's calls) with each concept's decision
    effect and call rate measured on the whole `reference` (m, D unit-norm CLIP embeddings) and the model's `calls`
    (m,) on it, and its flag kept only where both clear their minimum (`min_effect`, `min_call_rate`); the score and
    threshold stay as they were, and the ranks put the confirmed concepts first."""
    calls = np.asarray(calls, dtype=bool)
    if len(calls) != len(reference):
        raise ValueError(f"calls: expected one call per reference image ({len(reference)}), got {len(calls)}")
    similarity = reference @ vocabulary.text.T
    one_stratum = np.full(len(reference), RECOGNISED)
    decision = _StratumEffects(similarity, one_stratum, calls, {RECOGNISED: settings.min_absent}).mean(calls[None])[0]
    rate, half_width = call_rate(similarity, one_stratum, calls, settings.min_absent, settings.confidence)
    confirmed = confirms(decision, rate, settings)
    rank = rank_candidates(scores["score"].to_numpy(dtype=float), scores["extrinsic"].to_numpy(dtype=bool), confirmed)
    return scores.assign(decision=decision, **call_rate_columns(rate, half_width, settings), confirmed=confirmed,
                         flagged=scores["flagged"].to_numpy() & confirmed, rank=rank, called_reference=int(calls.sum()))


def output_calls(reference: pd.DataFrame, predictions: pd.DataFrame, model: str, upward: bool) -> np.ndarray:
    """(m,) whether the regressor `model`'s output on each reference image lies above (`upward`) or below the median
    of its outputs on the reference, matched on the image column: a regression group's "calls" (module docstring)."""
    column = output_column(model)
    if column not in predictions:
        raise ValueError(f"reference predictions have no column {column!r} (the output of regressor {model!r}); "
                         f"rerun the rule that predicts the reference")
    outputs = _by_reference_image(reference, predictions, column, "the output of ").to_numpy(dtype=float)
    median = np.median(outputs)
    return outputs > median if upward else outputs < median


def called(reference: pd.DataFrame, predictions: pd.DataFrame | None, core: str) -> np.ndarray:
    """(m,) whether the model predicts `core` for each reference image, matched on the image column."""
    if predictions is None:
        raise ValueError(f"class {core!r}: the model's predictions on the reference are needed to score it")
    return (_by_reference_image(reference, predictions, "prediction") == core).to_numpy()


def _by_reference_image(reference: pd.DataFrame, predictions: pd.DataFrame, column: str, what: str = "") -> pd.Series:
    """`column` of the reference predictions for each reference image, matched on the image column; a reference image
    without a row is an error naming it (`what` names the column's content in that message)."""
    by_image = predictions.set_index("image")[column]
    missing = sorted(set(reference["image"]) - set(by_image.index))
    if missing:
        raise ValueError(f"reference predictions lack {what}{len(missing)} reference image(s), e.g. {missing[0]!r}; "
                         f"rerun the rule that predicts the reference")
    return reference["image"].map(by_image)
