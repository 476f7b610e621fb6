"""The shortcut world: determinism, planted correlations and configuration errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from preimage.pipeline.config import ConfigError, validate_config
from preimage.pipeline.models import base_model_dir, model_dir
from preimage.world.attributes import CATEGORICAL
from preimage.world.generator import (
    WorldSpec,
    ground_truth,
    make_split,
    sample_attributes,
)


def test_same_seed_gives_identical_bytes(tiny_world):
    spec = WorldSpec.from_config(tiny_world)
    table_a, images_a = make_split(spec, "classifier_train")
    table_b, images_b = make_split(spec, "classifier_train")
    assert images_a.tobytes() == images_b.tobytes()
    assert table_a.to_parquet() == table_b.to_parquet()
    other, other_images = make_split(WorldSpec.from_config(tiny_world | {"seed": 1}), "classifier_train")
    assert other_images.tobytes() != images_a.tobytes()


def test_images_are_rgb_of_the_configured_size(tiny_world):
    table, images = make_split(WorldSpec.from_config(tiny_world | {"image_size": 16}), "unbiased_test")
    assert images.shape == (len(table), 16, 16, 3) and images.dtype == np.uint8
    assert images.std() > 10  # not blank


def _rate(table, cls, attribute, value) -> float:
    rows = table[table["shape"] == cls]
    return float((rows[attribute] == value).mean())


def test_biased_split_shows_each_shortcut_at_its_strength(config):
    world = config["world"] | {"splits": config["world"]["splits"] | {"classifier_train": 8000}}
    spec = WorldSpec.from_config(world)
    table = sample_attributes(spec, "classifier_train")
    assert spec.shortcuts, "the default world must plant shortcuts"
    for s in spec.shortcuts:
        assert abs(_rate(table, s.cls, s.attribute, s.value) - s.strength) <= 0.05
        for other in set(spec.shapes) - {s.cls}:
            assert abs(_rate(table, other, s.attribute, s.value) - spec.leak) <= 0.05


def test_unbiased_split_shows_no_correlation(config):
    world = config["world"] | {"splits": config["world"]["splits"] | {"prior_train": 8000}}
    spec = WorldSpec.from_config(world)
    table = sample_attributes(spec, "prior_train")
    for attribute, values in CATEGORICAL.items():
        for cls in spec.shapes:
            for value in values:
                assert abs(_rate(table, cls, attribute, value) - 1 / len(values)) <= 0.05


def test_broken_split_removes_each_shortcut_from_its_class(config):
    spec = WorldSpec.from_config(config["world"])
    table = sample_attributes(spec, "broken_test")
    for s in spec.shortcuts:
        assert _rate(table, s.cls, s.attribute, s.value) == 0.0
        others = table[table["shape"] != s.cls]
        assert 0.3 <= float((others[s.attribute] == s.value).mean()) <= 0.7


def test_ground_truth_lists_the_planted_shortcuts(config):
    truth = ground_truth(WorldSpec.from_config(config["world"]))
    assert list(truth.columns) == ["model", "class", "attribute", "value", "strength"]
    assert truth[truth["model"] == "classifier"].drop(columns="model").to_dict("records") == [
        {"class": s["class"], "attribute": s["attribute"], "value": s["value"], "strength": s["strength"]}
        for s in config["world"]["shortcuts"]
    ]


def test_default_world_has_two_kinds_of_shortcut_and_a_clean_class(config):
    spec = WorldSpec.from_config(config["world"])
    assert len({s.attribute for s in spec.shortcuts}) >= 2
    assert set(spec.shapes) - {s.cls for s in spec.shortcuts}


def test_changing_shortcuts_retrains_only_the_classifier(config):
    other = {**config, "world": config["world"] | {"shortcuts": []}}
    assert model_dir(other, "classifier") != model_dir(config, "classifier")
    for model in ("prior", "clip", "oracle"):
        assert model_dir(other, model) == model_dir(config, model)


def test_a_refine_stage_moves_the_prior_but_reuses_its_first_stage(config):
    refine = {"noise_offset": 0.1, "steps": 10, "learning_rate": 0.0003, "seed": 1}
    plain = {**config, "training": {**config["training"], "prior": {**config["training"]["prior"]}}}
    plain["training"]["prior"].pop("refine", None)
    refined = {**plain, "training": {**plain["training"], "prior": {**plain["training"]["prior"], "refine": refine}}}
    assert base_model_dir(plain, "prior") == model_dir(plain, "prior")
    assert base_model_dir(refined, "prior") == model_dir(plain, "prior") != model_dir(refined, "prior")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["world"].update(colour="red"), "unknown key(s) ['colour']"),
        (lambda c: c["world"]["shortcuts"][0].update(strenght=1), "world.shortcuts[0]: unknown key(s) ['strenght']"),
        (lambda c: c["world"]["shortcuts"][0].update(strength=1.5), "world.shortcuts[0].strength"),
        (lambda c: c["world"]["shortcuts"][0].update(value="glitter"), "'glitter' is not a value of tag"),
        (lambda c: c["world"]["shortcuts"][0].update({"class": "hexagon"}), "'hexagon' is not one of world.shapes"),
        (lambda c: c.update(device="tpu"), "device: 'tpu' is not one of"),
    ],
)
def test_bad_config_is_a_clear_error(config, edit, message):
    edit(config)
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert message in str(error.value)


def test_snakemake_stops_on_an_unknown_config_key():
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "bogus_key=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "unknown key(s) ['bogus_key']" in result.stdout + result.stderr
