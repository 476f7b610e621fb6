"""benchmarks/counterfactuals.py: from-noise counterfactuals against minimal edits, on tiny random models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pandas as pd
import timm
import torch
from conftest import TINY_SIZE

from preimage.world.oracle import output_size

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("circle", "square")


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_counterfactuals", REPO / "benchmarks" / "counterfactuals.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_grid_weighs_the_distance_only_for_late_starts_and_adds_rejection_and_cones_on_request() -> None:
    specs = load_script().settings({"kind": "guided", "num_steps": 5}, [1.0, 0.6], [0.0, 0.3], rejection=True)
    assert specs == {
        "guided s=1 d=0": {"kind": "guided", "num_steps": 5, "strength": 1.0, "distance_weight": 0.0},
        "rejection s=1": {"kind": "rejection", "strength": 1.0},
        "guided s=0.6 d=0": {"kind": "guided", "num_steps": 5, "strength": 0.6, "distance_weight": 0.0},
        "guided s=0.6 d=0.3": {"kind": "guided", "num_steps": 5, "strength": 0.6, "distance_weight": 0.3},
        "rejection s=0.6": {"kind": "rejection", "strength": 0.6},
    }
    coned = load_script().settings({"kind": "guided"}, [0.7], [0.1], rejection=False, cone_angle=30)
    assert coned == {"guided s=0.7 d=0.1": {"kind": "guided", "strength": 0.7, "distance_weight": 0.1},
                     "guided s=0.7 d=0.1 cone=30": {"kind": "guided", "strength": 0.7, "distance_weight": 0.1,
                                                    "cone_angle": 30}}


def test_changed_attributes_leave_out_the_shape_validity_and_continuous_readings() -> None:
    source = pd.Series({"shape": "circle", "fg_colour": "red", "bg_colour": "gray", "texture": "plain", "tag": "absent",
                        "valid": "valid", "scale": 0.5})
    members = pd.DataFrame([source.to_dict(), source.to_dict() | {"shape": "square", "tag": "present", "scale": 0.6}])
    changed = load_script().changed_attributes(members, source, SHAPES)
    assert list(changed.columns) == ["fg_colour", "bg_colour", "texture", "tag"]
    assert changed.sum().to_dict() == {"fg_colour": 0, "bg_colour": 0, "texture": 0, "tag": 1}


def test_a_setting_is_measured_on_every_source_with_shares_of_its_accepted_members(tiny_pixel_models) -> None:
    script = load_script()
    classifier, prior = tiny_pixel_models
    oracle = timm.create_model("resnet10t", pretrained=False, num_classes=output_size(SHAPES), channels=(8, 16, 32, 64))
    sources = pd.DataFrame({"image_id": ["a", "b"], "class_name": ["circle", "circle"]})
    images = torch.rand(2, 3, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(0))
    spec = {"kind": "guided", "num_steps": 4, "batch_size": 3, "strength": 0.5, "distance_weight": 0.1}
    row = script.measure("edit", spec, {"kind": "label", "target": "square"}, "square", sources, images, classifier,
                         prior, None, oracle.eval(), SHAPES, 3)
    assert row["setting"] == "edit" and row["members"] == 6 and 0 <= row["acceptance"] <= 1
    if row["acceptance"] > 0:
        assert 0 <= row["kept_attributes"] <= 1 and 0 <= row["target_shape"] <= 1 and row["lpips_to_source"] >= 0
