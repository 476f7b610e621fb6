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
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from preimage.analysis.concepts.groups import MOVED_UP
from preimage.world.generator import REGRESSOR_UP
from preimage.world.vocabulary import world_concept

PAIR = ["class", "concept"]
SUMMARY_COLUMNS = ["method", "precision", "recall", "f1", "hit_at_1", "mrr", "flagged", "planted", "true_flags",
                   "false_flags", "classes"]


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
    """Summary metrics of one method and its per-pair table (planted pairs and false flags)."""
    scored = evaluated_scores(scores)
    classes = sorted(set(scored["class"]))
    universe = scored[PAIR + ["score", "rank", "flagged"]].drop_duplicates(PAIR)
    if "model" in planted and REGRESSOR_UP not in classes:
        planted = planted[planted["model"] != "regressor"]  # a method that explained no regressor
    targets = planted[PAIR + ["attribute", "value"]].assign(planted=True)
    pairs = universe.merge(targets, on=PAIR, how="outer")
    pairs["planted"] = pairs["planted"].astype("boolean").fillna(False).astype(bool)
    pairs["flagged"] = pairs["flagged"].astype("boolean").fillna(False).astype(bool)
    pairs["rank"] = pairs["rank"].fillna(0).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        pairs["planted"], pairs["flagged"], average="binary", zero_division=1.0
    )
    hits = pairs[pairs["planted"]]
    reciprocal = np.where(hits["rank"] > 0, 1.0 / hits["rank"].clip(lower=1), 0.0)
    summary = {
        "method": method, "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "hit_at_1": float((hits["rank"] == 1).mean()) if len(hits) else float("nan"),
        "mrr": float(reciprocal.mean()) if len(hits) else float("nan"),
        "flagged": int(pairs["flagged"].sum()), "planted": int(pairs["planted"].sum()),
        "true_flags": int((pairs["flagged"] & pairs["planted"]).sum()),
        "false_flags": int((pairs["flagged"] & ~pairs["planted"]).sum()), "classes": len(classes),
    }
    shown = pairs[pairs["planted"] | pairs["flagged"]].assign(method=method)
    shown["reciprocal_rank"] = np.where(shown["rank"] > 0, 1.0 / shown["rank"].clip(lower=1), 0.0)
    columns = ["method", "class", "concept", "attribute", "value", "planted", "flagged", "score", "rank",
               "reciprocal_rank"]
    return summary, shown[columns].sort_values(["class", "concept"]).reset_index(drop=True)


def evaluate(methods: dict[str, pd.DataFrame], ground_truth: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: one row per method with an `f1` column, pairs: per planted pair and false flag)."""
    planted = planted_pairs(ground_truth)
    results = [evaluate_method(scores, planted, name) for name, scores in methods.items()]
    summary = pd.DataFrame([r[0] for r in results], columns=SUMMARY_COLUMNS)
    return summary, pd.concat([r[1] for r in results], ignore_index=True)
