"""Rank statistics shared by the invariant-set scorer and the data-only baseline.

Both compare a concept's CLIP score between two groups of images with the AUROC (the Mann-Whitney U
statistic divided by its maximum): 0.5 means no difference, 1 means every image of the first group
scores higher. The pooled ranks do not change when group labels are shuffled, so a permutation null
costs one matrix product per batch of shuffles.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

PRESENCE_QUANTILES = (0.1, 0.9)


def pooled_ranks(scores: np.ndarray) -> np.ndarray:
    """(N, T) average ranks of each column (ties share their mean rank)."""
    return rankdata(scores, axis=0)


def auroc_from_ranks(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(P, T) AUROC of the positive rows against the others, for P boolean masks `positive` (P, N)."""
    positive = np.atleast_2d(positive)
    n = positive.sum(1, keepdims=True).astype(float)
    m = positive.shape[1] - n
    if (n == 0).any() or (m == 0).any():
        raise ValueError("AUROC needs at least one positive and one negative row in every mask")
    u = positive.astype(float) @ ranks - n * (n + 1) / 2
    return u / (n * m)


def auroc(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """(T,) AUROC per column of `positive` (n, T) scores against `negative` (m, T) scores."""
    scores = np.concatenate([positive, negative])
    mask = np.zeros(len(scores), dtype=bool)
    mask[: len(positive)] = True
    return auroc_from_ranks(pooled_ranks(scores), mask)[0]


def permuted_masks(mask: np.ndarray, strata: np.ndarray, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """(P, N) shuffles of a boolean group mask within each stratum: the null where group membership
    carries no information beyond the stratum an image is in. Rows of stratum -1 stay False."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations!r}")
    masks = np.zeros((permutations, len(mask)), dtype=bool)
    for stratum in np.unique(strata[strata >= 0]):
        rows = np.flatnonzero(strata == stratum)
        masks[:, rows] = np.stack([rng.permutation(mask[rows]) for _ in range(permutations)])
    return masks


def null_threshold(null_scores: np.ndarray, candidates: np.ndarray, alpha: float) -> float:
    """The (1 - alpha) quantile of the largest candidate score in each of P null draws (P, T).

    Taking the maximum over all candidate concepts controls the chance of flagging *any* concept in a
    group where nothing is enriched (family-wise error rate `alpha`), however large the vocabulary.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not candidates.any():
        return float("nan")
    return float(np.quantile(np.nan_to_num(null_scores[:, candidates], nan=-np.inf).max(axis=1), 1 - alpha))


def flag(scores: np.ndarray, candidates: np.ndarray, threshold: float, min_effect: float) -> np.ndarray:
    """Candidates whose score beats both the permutation threshold and the minimum effect size."""
    return candidates & ~np.isnan(scores) & (scores > threshold) & (scores >= min_effect)


def rank_candidates(scores: np.ndarray, candidates: np.ndarray, confirmed: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each candidate by descending score, the `confirmed` ones (the model's calls on the reference
    agree with them) ahead of the others when given; 0 for non-candidates and missing scores."""
    valid = candidates & ~np.isnan(scores)
    order = scores[valid]
    if confirmed is not None and valid.any():
        order = order + np.where(np.asarray(confirmed, dtype=bool)[valid], np.ptp(order) + 1.0, 0.0)
    ranks = np.zeros(len(scores), dtype=int)
    ranks[valid] = rankdata(-order, method="min").astype(int)
    return ranks


def presence_threshold(similarity: np.ndarray) -> np.ndarray:
    """The CLIP similarity above which an image of a pool shows a concept, per column of `similarity` (N,) or (N, T):
    the midpoint of the pool's 10th and 90th percentiles, so a concept half the pool shows splits the pool where its
    two modes part."""
    low, high = np.quantile(similarity, PRESENCE_QUANTILES, axis=0)
    return (low + high) / 2


def call_rate_difference(present: np.ndarray, calls: np.ndarray, least: int) -> np.ndarray:
    """(T,) share of images the model calls the class among those showing each concept, minus that share among
    those not showing it, for `present` (N, T) and `calls` (N,); NaN where either side has fewer than `least`
    images."""
    shown, hidden, called_shown, called_hidden = _call_counts(present, calls)
    measured = (shown >= max(least, 1)) & (hidden >= max(least, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        difference = called_shown / shown - called_hidden / hidden
    return np.where(measured, difference, np.nan)


def call_rate_variance(present: np.ndarray, calls: np.ndarray) -> np.ndarray:
    """(T,) variance of `call_rate_difference` after Agresti and Caffo: each side's share estimated with one call
    and one miss added, which keeps an interval from collapsing when a side has no call (or only calls)."""
    shown, hidden, called_shown, called_hidden = _call_counts(present, calls)
    with_concept = (called_shown + 1) / (shown + 2)
    without = (called_hidden + 1) / (hidden + 2)
    return with_concept * (1 - with_concept) / (shown + 2) + without * (1 - without) / (hidden + 2)


def _call_counts(present: np.ndarray, calls: np.ndarray) -> tuple[np.ndarray, ...]:
    """(T,) images showing each concept, images not showing it, and the model's calls among each."""
    present, calls = np.asarray(present, dtype=bool), np.asarray(calls, dtype=bool)
    shown = present.sum(0)
    called_shown = (present & calls[:, None]).sum(0)
    return shown, len(present) - shown, called_shown, calls.sum() - called_shown
