"""The many-world benchmark: the seeded world sampler, the world configs and folders, and the table of the
worlds' evaluations (on hand-made evaluation summaries; the runs themselves are measured in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from preimage.pipeline.config import load_config, validate_config
from preimage.pipeline.steps.benchmarks import seed_role
from preimage.pipeline.worlds import (
    DONE,
    EVALUATION,
    finished,
    merge_overlay,
    prepare_folder,
    retrained_models,
    world_config,
)
from preimage.utils.hashing import stable_hash
from preimage.world.attributes import CATEGORICAL
from preimage.world.benchmark import ALL, WorldResult, benchmark_figure, benchmark_table
from preimage.world.generator import WorldSpec
from preimage.world.sampling import MAX_SHORTCUTS, STRENGTHS, sample_worlds, shortcut_counts
from preimage.world.vocabulary import world_concept

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ("circle", "square", "triangle", "cross")


@pytest.fixture(scope="module")
def config() -> dict:
    return load_config(ROOT / "config.yaml")


# --- the world sampler -------------------------------------------------------------------------------------------
def test_worlds_are_seeded_and_a_longer_draw_keeps_the_first_worlds():
    worlds = sample_worlds(0, 8, SHAPES)
    assert worlds == sample_worlds(0, 8, SHAPES)
    assert sample_worlds(0, 3, SHAPES) == worlds[:3]
    assert [w.shortcuts for w in sample_worlds(1, 8, SHAPES)] != [w.shortcuts for w in worlds]
    assert [w.name for w in worlds] == [f"world-{i:02d}" for i in range(8)]


def test_every_block_of_four_worlds_has_0_to_3_shortcuts():
    for seed in range(5):
        counts = shortcut_counts(seed, 12)
        assert [sorted(counts[i:i + 4]) for i in (0, 4, 8)] == [list(range(MAX_SHORTCUTS + 1))] * 3
        assert [len(w.shortcuts) for w in sample_worlds(seed, 12, SHAPES)] == counts


def test_drawn_worlds_are_valid_configs(config):
    for seed in range(10):
        for world in sample_worlds(seed, 8, SHAPES):
            merged = validate_config(merge_overlay(config, world.overlay("title")), source=world.name)
            spec = WorldSpec.from_config(merged["world"])
            assert len(spec.shortcuts) == len(world.shortcuts) <= MAX_SHORTCUTS
            values = [(s.attribute, s.value) for s in spec.shortcuts]
            assert len(set(values)) == len(values)  # a planted value points to one class
            for s in spec.shortcuts:
                assert s.cls in SHAPES and s.value in CATEGORICAL[s.attribute]
                assert world_concept(s.attribute, s.value) is not None  # a vocabulary can name it
                assert STRENGTHS[0] <= s.strength <= STRENGTHS[1]
            assert merged["report"]["title"].startswith(f"title: {world.name}")


def test_too_few_shapes_are_refused():
    with pytest.raises(ValueError, match="world.shapes"):
        sample_worlds(0, 2, ["circle"])


# --- world configs and folders -------------------------------------------------------------------------------------
def test_an_overlay_merges_like_a_configfile_and_removes_nulls(config):
    merged = merge_overlay(config, {"sets": {"objectives": {"neuron": None}, "members": 4}, "world": {"shortcuts": []}})
    assert config["sets"]["members"] == 32 and "neuron" in config["sets"]["objectives"]  # the base is untouched
    validated = validate_config(merged)
    assert validated["sets"]["members"] == 4 and validated["world"]["shortcuts"] == []
    assert "neuron" not in validated["sets"]["objectives"] and "label" in validated["sets"]["objectives"]


def test_a_world_config_takes_the_speed_overlay_and_shares_every_model_but_the_classifier(config):
    world = sample_worlds(0, 1, SHAPES)[0]
    world_cfg = world_config(config, world)
    more = merge_overlay(config, {"benchmark_worlds": {"worlds": 20, "seed": 5, "tuning_seeds": [3]}})
    assert stable_hash(world_config(more, world)) == stable_hash(world_cfg)  # a finished world stays finished
    assert set(world_cfg["sets"]["objectives"]) == {"label", "counterfactual"}
    assert world_cfg["world"]["shortcuts"] == list(world.shortcuts)
    assert retrained_models(world_cfg, ROOT) == []  # prior, CLIP and regressor: the committed folders
    assert retrained_models(world_cfg, ROOT / "elsewhere") != []
    with pytest.raises(ValueError, match="report.evaluate"):
        world_config(merge_overlay(config, {"benchmark_worlds": {"config": {"report": {"evaluate": False}}}}), world)


def test_a_world_folder_links_the_shared_models_and_is_finished_only_with_its_config(config, tmp_path):
    world_cfg = world_config(config, sample_worlds(0, 1, SHAPES)[0])
    models = tmp_path / "root" / "models" / "shortcut-world"
    (models / "prior-abc").mkdir(parents=True)
    folder = tmp_path / "world-00"
    (folder / "models" / "shortcut-world" / "classifier-own").mkdir(parents=True)
    prepare_folder(folder, world_cfg, tmp_path / "root")
    assert (folder / "models" / "shortcut-world" / "prior-abc").resolve() == (models / "prior-abc").resolve()
    assert load_config(folder / "config.yaml")["world"]["shortcuts"] == world_cfg["world"]["shortcuts"]
    assert finished(folder, world_cfg) is None
    (folder / DONE).write_text(json.dumps({"config_hash": stable_hash(world_cfg), "seconds": 12.5}))
    assert finished(folder, world_cfg) is None  # no evaluation yet
    (folder / EVALUATION).parent.mkdir(parents=True)
    (folder / EVALUATION).write_bytes(b"")
    assert finished(folder, world_cfg)["seconds"] == 12.5
    assert finished(folder, merge_overlay(world_cfg, {"sets": {"members": 4}})) is None  # another config: rerun


def test_seed_roles():
    assert seed_role(0, [0]).startswith("tuning") and seed_role(1, [0]) == "held out"


# --- the table ----------------------------------------------------------------------------------------------------
def _summary(sets: tuple, baseline: tuple) -> pd.DataFrame:
    """An evaluation summary as report_evaluation writes it: (precision, recall, f1, hit@1, planted, not learned,
    flagged, true flags, false flags) per method."""
    columns = ["precision", "recall", "f1", "hit_at_1", "planted", "not_learned", "flagged", "true_flags",
               "false_flags"]
    rows = [dict(zip(columns, sets), method="invariant sets"), dict(zip(columns, baseline), method="baseline")]
    return pd.DataFrame(rows).assign(mrr=0.0, classes=4)


def test_the_table_has_each_world_and_the_means_over_worlds():
    results = [
        WorldResult("world-00", "tag=present -> square (0.80, drop 60.0)", 1,
                    _summary((1.0, 1.0, 1.0, 1.0, 1, 0, 1, 1, 0), (0.5, 1.0, 2 / 3, 1.0, 1, 0, 2, 1, 1)), 300.0),
        WorldResult("world-01", "none", 0,
                    _summary((1.0, 1.0, 1.0, float("nan"), 0, 0, 0, 0, 0), (0.0, 1.0, 0.0, float("nan"), 0, 0, 2, 0, 2)),
                    200.0),
        WorldResult("world-02", "fg_colour=red -> cross (0.60, drop 5.0); texture=dots -> circle (0.9, drop 40.0)", 2,
                    _summary((0.5, 1.0, 2 / 3, 0.0, 1, 1, 2, 1, 1), (1.0, 0.0, 0.0, 0.0, 1, 1, 0, 0, 0)), 400.0),
    ]
    table = benchmark_table(results)
    assert len(table) == 3 * 2 + 2
    total = table[table["world"] == ALL].set_index("method")
    assert total.loc["invariant sets", "f1"] == pytest.approx((1 + 1 + 2 / 3) / 3)
    assert total.loc["invariant sets", "hit_at_1"] == pytest.approx(0.5)  # the world without a shortcut skipped
    assert total.loc["baseline", "f1"] == pytest.approx(2 / 9)
    assert total.loc["invariant sets", ["planted", "not_learned", "false_flags", "shortcuts"]].tolist() == [2, 1, 1, 3]
    assert total.loc["baseline", "false_flags"] == 3 and total.loc["baseline", "seconds"] == 900.0
    world = table[(table["world"] == "world-02") & (table["method"] == "invariant sets")].iloc[0]
    assert (world["shortcuts"], world["not_learned"], world["seconds"]) == (2, 1, 400.0)
    assert world["planted_shortcuts"].startswith("fg_colour=red")
    figure = benchmark_figure(table, "3 worlds")
    assert [axis.get_ylabel() for axis in figure.axes] == ["F1", "false flags"]


def test_a_summary_without_the_learned_counts_is_refused():
    old = _summary((1.0,) * 4 + (1,) * 5, (1.0,) * 4 + (1,) * 5).drop(columns="not_learned")
    with pytest.raises(ValueError, match="not_learned"):
        benchmark_table([WorldResult("world-00", "none", 0, old, 1.0)])
    with pytest.raises(ValueError, match="no world"):
        benchmark_table([])
