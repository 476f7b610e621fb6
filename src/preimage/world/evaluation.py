"""Score flagged (class, concept) pairs against the world's planted shortcuts. Evaluation only: this is
the one place that reads the ground truth, and nothing it computes flows back into explanations.

Only groups of kind "class" (the sets the model calls a class: invariant sets and label
counterfactuals) are evaluated for the classifier. The regressor's planted shortcut (ground-truth model
"regressor", class "up") is matched to the flags of the groups of kind "moved up" (regression counterfactuals
that move its output up, scored against those moving it down), under the class "up"; it is evaluated for a
method that scored such a group (the data-only baseline explains the classifier only). The universe is every
candidate (class, concept) pair a method scored, plus planted pairs it could not score (a concept missing from
the vocabulary, a class without sets), which count as misses. Precision, recall and F1 come from scikit-learn with `zero_division=1`: a method
that flags nothing invents nothing (precision 1), and a world with nothing planted is fully recalled,
so a clean model explained without flags scores F1 = 1.

A planted shortcut counts only when the model learned it (`learned_shortcuts`): its accuracy on the affected
images of the shortcut-broken split drops by at least `report.learned_drop_points` (the regressor's: the share of
predictions within tolerance, the same points). One it did not learn is listed apart (status "not learned") and
leaves the scores alone: not a miss when unflagged, not a false flag when flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from preimage.analysis.concepts.groups import MOVED_UP
from preimage.world.generator import REGRESSOR_UP
from preimage.world.vocabulary import world_concept

PAIR = ["class", "concept"]
SHORTCUT = ["class", "attribute", "value"]
SUMMARY_COLUMNS = ["method", "precision", "recall", "f1", "hit_at_1", "mrr", "flagged", "planted", "not_learned",
                   "true_flags", "false_flags", "classes"]
# a pair's status in the pairs table: a learned planted shortcut found or missed, one the model did not learn,
# or a flag nothing planted explains
FOUND, MISSED, NOT_LEARNED, FALSE_FLAG = "found", "missed", "not learned", "false flag"


def learned_shortcuts(ground_truth: pd.DataFrame, classifier_metrics: dict | None, regressor_metrics: dict | None,
                      min_drop: float) -> pd.DataFrame:
    """The ground truth with each shortcut's `drop_points` (from the model's training metrics: the points its
    accuracy on the broken split's affected images falls by) and `learned` (the drop at least `min_drop`).

    A model whose metrics are not given (None: not a world model, so not trained and measured here) has its
    shortcuts counted as learned, drop NaN. A shortcut the given metrics do not list raises: they belong to
    another world."""
    drops = {("classifier", *(entry[c] for c in SHORTCUT)): entry["drop_points"]
             for entry in (classifier_metrics or {}).get("shortcuts", [])}
    if regressor_metrics is not None:
        shortcut = regressor_metrics["shortcut"]
        drops[("regressor", REGRESSOR_UP, shortcut["attribute"], shortcut["value"])] = regressor_metrics["drop_points"]
    measured = {"classifier": classifier_metrics is not None, "regressor": regressor_metrics is not None}
    points = []
    for model, key in zip(ground_truth["model"], ground_truth[SHORTCUT].itertuples(index=False)):
        if not measured[model]:
            points.append(float("nan"))
        elif (model, *key) in drops:
            points.append(float(drops[(model, *key)]))
        else:
            raise ValueError(f"the {model}'s metrics list no shortcut {dict(zip(SHORTCUT, key))}: they were trained on "
                             "another world than the ground truth's (retrain with this config)")
    drop = pd.Series(points, index=ground_truth.index, dtype=float)
    return ground_truth.assign(drop_points=drop, learned=drop.isna() | (drop >= min_drop))


def planted_pairs(ground_truth: pd.DataFrame) -> pd.DataFrame:
    """The ground-truth table (class, attribute, value, strength) with each shortcut's vocabulary concept;
    a value no vocabulary lists (an absence) gets a placeholder that no method can flag: a counted miss."""
    missing = sorted({"class", "attribute", "value"} - set(ground_truth.columns))
    if missing:
        raise ValueError(f"ground truth lacks column(s) {missing}; expected class, attribute, value, strength")
    concepts = [world_concept(a, v) or f"(no concept for {a}={v})"
                for a, v in zip(ground_truth["attribute"], ground_truth["value"])]
    return ground_truth.assign(concept=concepts).reset_index(drop=True)


def evaluated_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The candidate (class, concept) scores evaluation reads: class groups under their core class, and the
    "moved up" groups of regression counterfactuals under the class "up" (several such groups: a pair is
    flagged when any group flags it, with its best rank and score)."""
    classes = scores[(scores["kind"] == "class") & scores["extrinsic"]]
    up = scores[(scores["kind"] == MOVED_UP) & scores["extrinsic"]].assign(**{"class": REGRESSOR_UP})
    if up.empty:
        return classes
    up = up.groupby(PAIR, as_index=False).agg(score=("score", "max"), rank=("rank", "min"), flagged=("flagged", "any"))
    return pd.concat([classes, up.assign(kind=MOVED_UP, extrinsic=True)], ignore_index=True)


def evaluate_method(scores: pd.DataFrame, planted: pd.DataFrame, method: str) -> tuple[dict, pd.DataFrame]:
    """Summary metrics of one method and its per-pair table (planted pairs and false flags); `planted` as
    `planted_pairs` gives it, a `learned` column (else every shortcut counts as learned) and `drop_points`."""
    scored = evaluated_scores(scores)
    classes = sorted(set(scored["class"]))
    universe = scored[PAIR + ["score", "rank", "flagged"]].drop_duplicates(PAIR)
    if "model" in planted and REGRESSOR_UP not in classes:
        planted = planted[planted["model"] != "regressor"]  # a method that explained no regressor
    targets = planted.reindex(columns=PAIR + ["attribute", "value", "drop_points", "learned"]).assign(planted=True)
    targets["learned"] = targets["learned"].astype("boolean").fillna(True).astype(bool)
    pairs = universe.merge(targets, on=PAIR, how="outer")
    for column in ("planted", "flagged", "learned"):
        pairs[column] = pairs[column].astype("boolean").fillna(False).astype(bool)
    pairs["rank"] = pairs["rank"].fillna(0).astype(int)
    pairs["status"] = pair_status(pairs)
    counted = pairs[pairs["status"] != NOT_LEARNED]  # a shortcut the model did not learn: neither miss nor false flag
    precision, recall, f1, _ = precision_recall_fscore_support(
        counted["planted"], counted["flagged"], average="binary", zero_division=1.0
    )
    hits = counted[counted["planted"]]
    reciprocal = np.where(hits["rank"] > 0, 1.0 / hits["rank"].clip(lower=1), 0.0)
    summary = {
        "method": method, "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "hit_at_1": float((hits["rank"] == 1).mean()) if len(hits) else float("nan"),
        "mrr": float(reciprocal.mean()) if len(hits) else float("nan"),
        "flagged": int(counted["flagged"].sum()), "planted": int(counted["planted"].sum()),
        "not_learned": int((pairs["status"] == NOT_LEARNED).sum()),
        "true_flags": int((pairs["status"] == FOUND).sum()),
        "false_flags": int((pairs["status"] == FALSE_FLAG).sum()), "classes": len(classes),
    }
    shown = pairs[pairs["planted"] | pairs["flagged"]].assign(method=method)
    shown["reciprocal_rank"] = np.where(shown["rank"] > 0, 1.0 / shown["rank"].clip(lower=1), 0.0)
    columns = ["method", "class", "concept", "attribute", "value", "status", "planted", "flagged", "score", "rank",
               "reciprocal_rank", "drop_points"]
    return summary, shown[columns].sort_values(["class", "concept"]).reset_index(drop=True)


def pair_status(pairs: pd.DataFrame) -> pd.Series:
    """FOUND, MISSED, NOT_LEARNED or FALSE_FLAG for each planted or flagged pair ("" for the others: scored,
    neither planted nor flagged)."""
    status = np.select(
        [pairs["planted"] & ~pairs["learned"], pairs["planted"] & pairs["flagged"], pairs["planted"], pairs["flagged"]],
        [NOT_LEARNED, FOUND, MISSED, FALSE_FLAG], default="")
    return pd.Series(status, index=pairs.index)


def evaluate(methods: dict[str, pd.DataFrame], ground_truth: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: one row per method with an `f1` column, pairs: per planted pair and false flag)."""
    planted = planted_pairs(ground_truth)
    results = [evaluate_method(scores, planted, name) for name, scores in methods.items()]
    summary = pd.DataFrame([r[0] for r in results], columns=SUMMARY_COLUMNS)
    return summary, pd.concat([r[1] for r in results], ignore_index=True)
