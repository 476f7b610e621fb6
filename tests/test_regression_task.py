"""The world's regression task: its splits and planted shortcut, the regressor, the objectives that name it, the
"moved up" / "moved down" concept groups and the evaluation of the regressor's shortcut."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from preimage.analysis.concepts.groups import MOVED_DOWN, MOVED_UP, Group, concept_groups, set_group
from preimage.pipeline.config import ConfigError, models_named, shared_world, validate_config
from preimage.pipeline.models import model_dir
from preimage.pipeline.workflow import contrast_groups, model_config
from preimage.world.evaluation import evaluate
from preimage.world.generator import WorldSpec, ground_truth, sample_attributes


def _upper(spec: WorldSpec, table: pd.DataFrame) -> np.ndarray:
    return spec.regression.normalise(table[spec.regression.target].to_numpy()) >= 0.5


def _shows(spec: WorldSpec, table: pd.DataFrame) -> np.ndarray:
    return (table[spec.regression.attribute] == spec.regression.value).to_numpy()


@pytest.fixture
def regression_world(config) -> dict:
    world = copy.deepcopy(config["world"])
    world["regression"]["splits"] = {"train": 3000, "test": 64, "broken": 3000}
    return world


def test_the_regression_shortcut_goes_with_the_upper_half_and_is_reversed_when_broken(regression_world):
    spec = WorldSpec.from_config(regression_world)
    strength, chance = spec.regression.strength, 1 / 3  # three textures
    train = sample_attributes(spec, "regressor_train")
    upper, shows = _upper(spec, train), _shows(spec, train)
    assert abs(shows[upper].mean() - (strength + (1 - strength) * chance)) < 0.03
    assert abs(shows[~upper].mean() - (1 - strength) * chance) < 0.03
    broken = sample_attributes(spec, "regressor_broken")
    upper, shows = _upper(spec, broken), _shows(spec, broken)
    assert shows[upper].mean() == 0.0 and abs(shows[~upper].mean() - 0.5) < 0.04
    # the other attributes stay as in an unbiased split, the target uniform over its range
    assert abs((train["tag"] == "present").mean() - 0.5) < 0.04
    assert abs(upper.mean() - 0.5) < 0.04


def test_the_ground_truth_holds_the_regressor_shortcut_beside_the_classifiers(config):
    truth = ground_truth(WorldSpec.from_config(config["world"]))
    assert list(truth.columns) == ["model", "class", "attribute", "value", "strength"]
    regression = config["world"]["regression"]
    assert truth[truth["model"] == "regressor"].drop(columns="model").to_dict("records") == [
        {"class": "up", **regression["shortcut"]}]
    assert (truth["model"] == "classifier").sum() == len(config["world"]["shortcuts"])
    without = {key: value for key, value in config["world"].items() if key != "regression"}
    assert set(ground_truth(WorldSpec.from_config(without))["model"]) == {"classifier"}
    independent = copy.deepcopy(config["world"])
    independent["regression"]["shortcut"]["strength"] = 0  # presets/world_no_shortcut.yaml: nothing planted
    assert set(ground_truth(WorldSpec.from_config(independent))["model"]) == {"classifier"}


def test_the_regression_task_moves_only_the_regressor_and_its_rules(config):
    other = copy.deepcopy(config)
    other["world"]["regression"]["shortcut"]["strength"] = 0.5
    assert model_dir(other, "regressor") != model_dir(config, "regressor")
    for model in ("classifier", "prior", "clip", "oracle"):
        assert model_dir(other, model) == model_dir(config, model)
    assert "regression" not in shared_world(config)
    assert model_config(other, "classifier", "prior") == model_config(config, "classifier", "prior")
    assert model_config(other, "regressor") != model_config(config, "regressor")
    assert "regressor" not in model_config(config, "classifier")["training"]


def test_objectives_may_name_the_regressor_only_when_it_is_configured(config):
    assert models_named(config["sets"]["objectives"]) == ("regressor",)
    without = copy.deepcopy(config)
    del without["models"]["regressor"]
    with pytest.raises(ConfigError, match=r"sets.objectives.size: field 'model': unknown model 'regressor'"):
        validate_config(without)
    no_task = copy.deepcopy(config)
    del no_task["world"]["regression"]
    with pytest.raises(ConfigError, match=r"world.regression: required because models.regressor.source = world"):
        validate_config(no_task)
    bad = copy.deepcopy(config)
    bad["world"]["regression"]["shortcut"]["value"] = "purple"
    with pytest.raises(ConfigError, match=r"world.regression.shortcut.value: 'purple' is not a value of texture"):
        validate_config(bad)


def test_a_tiny_regressor_trains_saves_its_units_and_loads_as_the_regressor(regression_world, config, tmp_path):
    import torch

    from preimage.pipeline.models import resolve_regressor
    from preimage.world.training.regressor import train_regressor

    world = copy.deepcopy(regression_world)
    world["splits"] = {name: 64 for name in world["splits"]}
    world["image_size"] = 16
    world["regression"]["splits"] = {"train": 64, "test": 32, "broken": 32}
    training = {"architecture": "resnet10t", "model_args": {"channels": [8, 16, 32, 64]}, "epochs": 1,
                "batch_size": 32, "learning_rate": 0.002, "seed": 0}
    run = copy.deepcopy(config) | {"world": world, "training": config["training"] | {"regressor": training}}
    folder = tmp_path / model_dir(run, "regressor")
    torch.set_num_threads(1)
    metrics = train_regressor(WorldSpec.from_config(world), training, "cpu", folder)
    assert {"mae", "rmse", "r2", "within_tolerance"} <= set(metrics["iid"]) and "drop_points" in metrics
    assert np.isfinite(metrics["shortcut"]["bias"])
    saved = json.loads((folder / "config.json").read_text())["regression"]
    assert saved == {"target": "scale", "low": 0.4, "high": 0.65, "units": "normalised: (target - low) / (high - low)"}
    run["models"]["regressor"] = {"source": str(folder)}
    regressor = resolve_regressor(run, "cpu")
    assert regressor(torch.rand(2, 3, 16, 16)).shape == (2, 1)


def test_regression_counterfactuals_are_moved_up_and_down_groups_scored_against_each_other(config):
    objectives = config["sets"]["objectives"]
    assert set_group(objectives["size_up"], "size_up", "circle") == ("size_up", MOVED_UP, None)
    assert set_group(objectives["size_down"], "size_down", "circle") == ("size_down", MOVED_DOWN, None)
    assert set_group(objectives["size"], "size", "circle") == ("size", "objective", None)
    ids = [f"{source}__{name}__guided" for source in ("a", "b") for name in ("size", "size_up", "size_down")]
    groups = concept_groups(ids, lambda set_id: "circle", objectives)
    assert {slug: group.kind for slug, group in groups.items()} == {
        "size": "objective", "size_up": MOVED_UP, "size_down": MOVED_DOWN}
    assert contrast_groups(groups, "size_up") == ["size_down"]
    assert contrast_groups(groups, "size_down") == ["size_up"]
    assert contrast_groups(groups, "size") == []


def _scores(rows: list[tuple[str, str, str, str | None, bool]]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=["group", "kind", "concept", "class", "flagged"])
    return table.assign(score=np.where(table["flagged"], 0.5, 0.1), rank=1, extrinsic=True)


def test_the_regressor_shortcut_is_scored_on_the_moved_up_group(config):
    truth = ground_truth(WorldSpec.from_config(config["world"]))
    found = _scores([
        ("square", "class", "a tag", "square", True), ("triangle", "class", "a purple background", "triangle", True),
        ("size_up", MOVED_UP, "a dotted background", None, True), ("size_up", MOVED_UP, "a red shape", None, False),
        ("size_down", MOVED_DOWN, "a plain background", None, True),  # what moving down adds: not evaluated
    ])
    summary, pairs = evaluate({"sets": found}, truth)
    row = summary.iloc[0]
    assert (row.precision, row.recall, row.true_flags, row.false_flags, row.planted) == (1.0, 1.0, 3, 0, 3)
    assert ("up", "a dotted background") in set(zip(pairs["class"], pairs["concept"]))
    wrong = found.assign(flagged=found["concept"] == "a red shape")
    summary, _ = evaluate({"sets": wrong}, truth)
    assert (summary.iloc[0].true_flags, summary.iloc[0].false_flags, summary.iloc[0].recall) == (0, 1, 0.0)
    classifier_only = found[found["kind"] == "class"]  # e.g. the data-only baseline: no regressor explained
    summary, _ = evaluate({"baseline": classifier_only}, truth)
    assert (summary.iloc[0].planted, summary.iloc[0].recall) == (2, 1.0)


def test_the_report_says_what_a_moved_group_is_compared_with():
    from preimage.analysis.report.document import GroupSection

    def section(kind: str, core: str | None) -> GroupSection:
        return GroupSection(group="g", core=core, set_ids=[], scores=pd.DataFrame(), clusters=pd.DataFrame(), kind=kind)

    up = section(MOVED_UP, None)
    assert up.note == "regression output moved up: what it adds over moving it the other way"
    assert up.compared_with == "members of the moved down groups"
    assert section("class", "square").note == "keeps class square"
    assert section("objective", None).compared_with == "reference samples" and section("objective", None).note == ""


def test_an_overlay_removes_the_regressor_and_its_objectives_with_null(config):
    from snakemake.utils import update_config

    update_config(config, {"models": {"regressor": None},
                           "sets": {"objectives": {"size": None, "size_up": None, "size_down": None},
                                    "sampler_overrides": {"size_up": None, "size_down": None}}})
    validate_config(config)
    assert "regressor" not in config["models"] and models_named(config["sets"]["objectives"]) == ()
    assert set(config["sets"]["sampler_overrides"]) == {"counterfactual"}
    config["models"]["classifier"] = None  # a required model cannot be removed: the schema names it
    with pytest.raises(ConfigError, match=r"models.classifier: None is not of type 'object'"):
        validate_config(config)


def test_a_cone_is_refused_for_an_objective_on_the_regressor(config):
    config["models"]["robust"] = {"source": "world"}
    config["sets"]["sampler_overrides"]["size_up"]["guided"]["cone_angle"] = 30
    with pytest.raises(ConfigError, match=r"sets.objectives.size_up: names model 'regressor', but the robust model"):
        validate_config(config)


# --- a moved group's flags confirmed on the regressor's outputs ---------------------------------------------------
MOVED_CONCEPTS = ("a square", "a circle", "a dotted background", "a purple background")


def _moved_vocabulary():
    from preimage.analysis.concepts.embeddings import EmbeddedVocabulary

    axes = np.eye(8, dtype=np.float32)
    return EmbeddedVocabulary(MOVED_CONCEPTS, MOVED_CONCEPTS, axes[:4], ("square", "circle"), ("square", "circle"),
                              axes[:2], 30.0)


def _moved_images(rng: np.random.Generator, n: int, dots: float, purple: float) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of squares and circles, a share `dots` with dots and `purple` on purple; also which show dots."""
    x = rng.normal(0, 0.2, (n, 8))
    x[np.arange(n), rng.integers(0, 2, n)] += 1.0
    shows_dots = rng.random(n) < dots
    x[:, 2] += 0.8 * shows_dots
    x[:, 3] += 0.8 * (rng.random(n) < purple)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), shows_dots


def _moved_up_scores(rng: np.random.Generator, up: tuple[float, float], down: tuple[float, float]):
    """A moved-up group scored against moved-down members, each direction's 200 images showing dots and purple
    backgrounds at the given (dots, purple) shares; with its vocabulary and settings."""
    from preimage.analysis.concepts.spurious import SpuriousSettings, score_concepts

    vocabulary, settings = _moved_vocabulary(), SpuriousSettings(permutations=200)
    up_images, _ = _moved_images(rng, 200, *up)
    down_images, _ = _moved_images(rng, 200, *down)
    sets = (np.arange(200) % 4).astype(str)
    return score_concepts(up_images, down_images, vocabulary, None, [True] * 4, sets, settings), vocabulary, settings


def _reference_calls(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """500 plain prior samples, half with dots and half purple, and the regressor's calls on them: its output, which
    rises with dots and ignores purple, above the median."""
    reference, shows_dots = _moved_images(rng, 500, dots=0.5, purple=0.5)
    outputs = rng.normal(0.5, 0.15, 500) + 0.2 * shows_dots
    return reference, outputs > np.median(outputs)


def test_a_moved_groups_flag_stands_only_where_the_regressor_moves_with_the_concept_on_the_reference():
    from preimage.analysis.concepts.spurious import confirm_on_reference

    rng = np.random.default_rng(0)
    # Moving the output up adds dots (the regressor's shortcut) and, by the guidance's habit, purple backgrounds.
    scores, vocabulary, settings = _moved_up_scores(rng, up=(0.8, 0.7), down=(0.1, 0.2))
    assert scores.set_index("concept").loc[["a dotted background", "a purple background"], "flagged"].all()
    reference, calls = _reference_calls(rng)
    confirmed = confirm_on_reference(scores, reference, calls, vocabulary, settings).set_index("concept")
    dots, purple = confirmed.loc["a dotted background"], confirmed.loc["a purple background"]
    assert dots["flagged"] and dots["decision"] >= 0.2 and dots["call_rate_low"] > 0.2
    assert not purple["confirmed"] and not purple["flagged"] and abs(purple["call_rate"]) < 0.1
    assert confirmed["score"].equals(scores.set_index("concept")["score"])  # the score is the contrast's alone
    assert confirmed["called_reference"].iloc[0] == 250
    with pytest.raises(ValueError, match=r"expected one call per reference image \(500\), got 3"):
        confirm_on_reference(scores, reference, calls[:3], vocabulary, settings)


def test_a_concept_the_regressor_ignores_ranks_below_one_it_moves_with_however_enriched():
    from preimage.analysis.concepts.spurious import confirm_on_reference

    rng = np.random.default_rng(1)
    # The guidance piles purple into the upward edits far more than the dots the regressor relies on.
    scores, vocabulary, settings = _moved_up_scores(rng, up=(0.6, 0.95), down=(0.2, 0.05))
    by_score = scores.set_index("concept")
    assert by_score.loc["a purple background", "rank"] == 1 and by_score.loc["a dotted background", "rank"] == 2
    reference, calls = _reference_calls(rng)
    confirmed = confirm_on_reference(scores, reference, calls, vocabulary, settings).set_index("concept")
    assert confirmed.loc["a dotted background", "rank"] == 1 and confirmed.loc["a dotted background", "flagged"]
    assert confirmed.loc["a purple background", "rank"] == 2 and not confirmed.loc["a purple background", "confirmed"]
    assert confirmed["score"].equals(by_score["score"])


def test_a_moved_groups_calls_are_the_reference_outputs_beyond_their_median():
    from preimage.analysis.concepts.predictions import output_column
    from preimage.analysis.concepts.spurious import output_calls

    reference = pd.DataFrame({"image": ["members/000.png", "members/001.png", "members/002.png", "members/003.png"]})
    predictions = pd.DataFrame({"image": ["members/003.png", "members/000.png", "members/001.png", "members/002.png"],
                                "prediction": "square", output_column("regressor"): [0.9, 0.1, 0.6, 0.3]})
    assert output_calls(reference, predictions, "regressor", upward=True).tolist() == [False, True, False, True]
    assert output_calls(reference, predictions, "regressor", upward=False).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match=r"no column 'output:other' \(the output of regressor 'other'\)"):
        output_calls(reference, predictions, "other", upward=True)
    with pytest.raises(ValueError, match=r"lack the output of 1 reference image\(s\), e.g. 'members/003.png'"):
        output_calls(reference, predictions.iloc[1:], "regressor", upward=True)


def test_a_moved_group_is_confirmed_on_the_output_of_its_objectives_model(config):
    from preimage.pipeline.workflow import output_model

    objectives = config["sets"]["objectives"]
    ids = [f"a__{name}__guided" for name in ("label", "size", "size_up", "size_down")]
    groups = concept_groups(ids, lambda set_id: "circle", objectives)
    assert {slug: output_model(objectives, group) for slug, group in groups.items()} == {
        "circle": None, "size": None, "size_up": "regressor", "size_down": "regressor"}


def test_the_report_states_a_moved_groups_finding_as_a_share_of_outputs_moved():
    from preimage.analysis.report.document import GroupSection, _finding

    row = pd.DataFrame([{"concept": "a dotted background", "call_rate": 0.31, "call_rate_low": 0.24,
                         "call_rate_high": 0.38, "call_rate_confidence": 0.9}]).iloc[0]
    section = GroupSection(group="size_down", core=None, set_ids=[], scores=pd.DataFrame(), clusters=pd.DataFrame(),
                           kind=MOVED_DOWN)
    assert _finding(row, section) == (
        "**a dotted background** (the regressor puts reference images showing it in the lower half of its outputs "
        "31 points more often than those without it; 90 % interval 24 to 38)")
    unmeasured = row.copy()
    unmeasured["call_rate"] = np.nan
    assert _finding(unmeasured, section) == "**a dotted background**"


def test_the_reference_predictions_hold_each_regressors_output(config, tmp_path, monkeypatch):
    import torch

    from conftest import REPO
    from preimage.analysis.concepts.predictions import output_column
    from preimage.pipeline.models import resolve_regressor
    from preimage.pipeline.steps.concepts import predict_reference
    from preimage.pipeline.workflow import model_config
    from preimage.utils.io import write_parquet, write_png
    from preimage.world.render import render

    monkeypatch.chdir(REPO)  # the world's committed models
    spec = WorldSpec.from_config(config["world"])
    attributes = sample_attributes(spec, "unbiased_test").head(6)
    for i, row in enumerate(attributes.to_dict("records")):
        write_png(render(row, spec.image_size), tmp_path / f"members/{i:03d}.png")
    write_parquet(pd.DataFrame({"image": [f"members/{i:03d}.png" for i in range(6)], "accepted": True}),
                  tmp_path / "members.parquet")
    run = model_config(config, "classifier", "regressor")
    table = predict_reference(tmp_path / "members.parquet", tmp_path / "predictions.parquet", run, "cpu", 4, 1,
                              ["regressor"])
    assert list(table.columns) == ["image", "prediction", output_column("regressor")]
    assert table.equals(pd.read_parquet(tmp_path / "predictions.parquet"))
    images = torch.stack([torch.from_numpy(render(row, spec.image_size)).permute(2, 0, 1).float() / 255
                          for row in attributes.to_dict("records")])
    with torch.no_grad():
        expected = resolve_regressor(run, "cpu")(images).reshape(-1).numpy()
    np.testing.assert_allclose(table[output_column("regressor")], expected, atol=1e-4)
    classifier_only = predict_reference(tmp_path / "members.parquet", tmp_path / "classes.parquet",
                                        model_config(config, "classifier"), "cpu", 4, 1)
    assert list(classifier_only.columns) == ["image", "prediction"]


TINY_MOVED_RUN = """
sets:
  members: 4
  sources: {per_class: 1}
  rejection_pool: {members: 64}
  objectives: {neuron: null, lowpass: null, counterfactual: null, size: null}
  sampler_overrides: {counterfactual: null}
reference: {members: 64}
"""


@pytest.mark.slow
def test_the_workflow_confirms_the_moved_groups_on_the_regressors_outputs(tmp_path):
    """The concept step of a small default-world run (label, size_up and size_down; the committed models): the
    reference predictions carry the regressor's outputs, and each moved group is confirmed on them."""
    import subprocess
    import sys

    from conftest import REPO
    from preimage.analysis.concepts.predictions import output_column

    (tmp_path / "models").symlink_to(REPO / "models")
    (tmp_path / "overlay.yaml").write_text(TINY_MOVED_RUN)
    run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(REPO / "config.yaml"), "overlay.yaml", "--cores", "2",
                          "results/concepts/spurious.parquet"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    predictions = pd.read_parquet(tmp_path / "results/concepts/reference_predictions.parquet")
    outputs = predictions[output_column("regressor")]
    assert len(predictions) == 64 and outputs.notna().all() and outputs.std() > 0
    scores = pd.read_parquet(tmp_path / "results/concepts/spurious.parquet")
    moved = scores[scores["kind"].isin([MOVED_UP, MOVED_DOWN])]
    assert set(moved["group"]) == {"size_up", "size_down"}
    assert (moved["called_reference"] == 32).all()  # the half of the reference beyond the median
    assert moved.groupby("group")["call_rate"].apply(lambda rates: rates.notna().any()).all()
    assert not (moved["flagged"] & ~moved["confirmed"]).any()
