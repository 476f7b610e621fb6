"""The learned-shortcut rule of the world's evaluation: a planted shortcut counts only when the model's accuracy on
its affected images of the shortcut-broken split dropped by at least the configured points."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from preimage.pipeline.steps.report import evaluate_flags
from preimage.world.evaluation import FALSE_FLAG, FOUND, MISSED, NOT_LEARNED, evaluate, learned_shortcuts

TRUTH = pd.DataFrame({"model": ["classifier", "classifier", "regressor"], "class": ["square", "triangle", "up"],
                      "attribute": ["tag", "bg_colour", "texture"], "value": ["present", "purple", "dots"],
                      "strength": [0.95, 0.6, 0.95]})


def _metrics(tag_drop: float, purple_drop: float) -> dict:
    """A classifier's metrics.json as training writes it, with the two shortcuts' drops."""
    return {"shortcuts": [
        {"class": "square", "attribute": "tag", "value": "present", "strength": 0.95, "drop_points": tag_drop},
        {"class": "triangle", "attribute": "bg_colour", "value": "purple", "strength": 0.6, "drop_points": purple_drop},
    ]}


REGRESSOR = {"shortcut": {"attribute": "texture", "value": "dots", "strength": 0.95}, "drop_points": 21.15}


def _scores(rows: list[tuple[str, str, str, float, int, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["kind", "class", "concept", "score", "rank", "flagged"]).assign(extrinsic=True)


def test_drops_from_the_metrics_decide_what_was_learned():
    truth = learned_shortcuts(TRUTH, _metrics(75.7, 5.5), REGRESSOR, min_drop=20)
    assert truth["drop_points"].tolist() == [75.7, 5.5, 21.15]
    assert truth["learned"].tolist() == [True, False, True]
    strict = learned_shortcuts(TRUTH, _metrics(75.7, 5.5), REGRESSOR, min_drop=25)
    assert strict["learned"].tolist() == [True, False, False]
    unmeasured = learned_shortcuts(TRUTH, _metrics(75.7, 5.5), None, min_drop=20)  # a regressor not the world's
    assert unmeasured["learned"].tolist() == [True, False, True] and pd.isna(unmeasured["drop_points"].iloc[2])


def test_metrics_of_another_world_are_refused():
    with pytest.raises(ValueError, match="another world"):
        learned_shortcuts(TRUTH.assign(value=["present", "gray", "dots"]), _metrics(75.7, 50.9), REGRESSOR, 20)


def test_a_shortcut_not_learned_is_neither_a_miss_nor_a_false_flag():
    truth = learned_shortcuts(TRUTH.iloc[:2], _metrics(75.7, 5.5), None, min_drop=20)
    flagged = _scores([("class", "square", "a tag", 0.5, 1, True),
                       ("class", "triangle", "a purple background", 0.3, 1, True),
                       ("class", "triangle", "a red shape", 0.1, 2, False)])
    summary, pairs = evaluate({"flags it": flagged}, truth)
    row = summary.iloc[0]
    assert (row.precision, row.recall, row.f1, row.hit_at_1) == (1.0, 1.0, 1.0, 1.0)
    assert (row.planted, row.not_learned, row.flagged, row.true_flags, row.false_flags) == (1, 1, 1, 1, 0)
    assert dict(zip(pairs["concept"], pairs["status"])) == {"a tag": FOUND, "a purple background": NOT_LEARNED}

    quiet = flagged.assign(flagged=[True, False, False])
    summary, pairs = evaluate({"leaves it": quiet}, truth)
    assert (summary.iloc[0].recall, summary.iloc[0].f1, summary.iloc[0].not_learned) == (1.0, 1.0, 1)
    assert pairs.set_index("concept").loc["a purple background", "status"] == NOT_LEARNED


def test_learned_shortcuts_still_count_as_misses_and_false_flags():
    truth = learned_shortcuts(TRUTH.iloc[:2], _metrics(75.7, 50.9), None, min_drop=20)
    wrong = _scores([("class", "square", "a tag", 0.1, 3, False), ("class", "square", "a red shape", 0.4, 1, True),
                     ("class", "triangle", "a purple background", 0.3, 1, True)])
    summary, pairs = evaluate({"m": wrong}, truth)
    row = summary.iloc[0]
    assert (row.precision, row.recall, row.not_learned, row.false_flags) == (0.5, 0.5, 0, 1)
    assert dict(zip(pairs["concept"], pairs["status"])) == {
        "a tag": MISSED, "a red shape": FALSE_FLAG, "a purple background": FOUND}


def test_the_evaluation_step_reads_the_training_metrics(tmp_path):
    paths = {name: tmp_path / f"{name}.parquet" for name in ("spurious", "truth", "summary", "pairs")}
    _scores([("class", "square", "a tag", 0.5, 1, True), ("class", "triangle", "a purple background", 0.3, 1, True),
             ("moved up", "size_up", "a dotted background", 0.3, 1, True)]).to_parquet(paths["spurious"])
    TRUTH.to_parquet(paths["truth"])
    (tmp_path / "classifier.json").write_text(json.dumps(_metrics(75.7, 5.5)))
    (tmp_path / "regressor.json").write_text(json.dumps(REGRESSOR))
    summary, pairs = evaluate_flags(paths["spurious"], paths["truth"], None, None, paths["summary"], paths["pairs"],
                                    tmp_path / "classifier.json", tmp_path / "regressor.json", min_drop=20)
    assert (summary.iloc[0].planted, summary.iloc[0].not_learned, summary.iloc[0].f1) == (2, 1, 1.0)
    assert pd.read_parquet(paths["pairs"])["status"].tolist() == [FOUND, NOT_LEARNED, FOUND]
