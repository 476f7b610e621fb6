"""benchmarks/invariant_sets.py's side-by-side sampler comparison on tiny random models, on the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from conftest import TINY_SIZE

REPO = Path(__file__).resolve().parents[1]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_invariant_sets", REPO / "benchmarks" / "invariant_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_samplers_are_compared_on_the_same_sources_with_their_denoiser_passes(tmp_path, tiny_pixel_models) -> None:
    script = load_script()
    classifier, prior = tiny_pixel_models
    sources = script.pd.DataFrame({"image_id": ["a", "b"], "class_name": ["circle", "square"]})
    images = torch.rand(2, 3, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(0))
    samplers = {"guided": {"kind": "guided", "num_steps": 3, "batch_size": 2},
                "rejection": {"kind": "rejection", "num_steps": 3, "batch_size": 2},
                "noise_opt": {"kind": "noise_opt", "num_steps": 2, "iterations": 2, "batch_size": 2,
                              "stop_when_accepted": False}}
    figure = tmp_path / "samplers.png"
    table = script.compare_samplers(samplers, "label", {"kind": "label"}, sources, images, classifier, prior, None, 2, figure)
    rows = table.set_index("sampler")
    assert set(rows.index) == set(samplers) and (rows["sets"] == 2).all()
    assert rows.loc["rejection", "unet_passes_per_member"] == 3
    assert rows.loc["noise_opt", "unet_passes_per_member"] >= 2 * 2  # every iteration runs the whole sampler
    assert ((rows["acceptance_rate"] >= 0) & (rows["acceptance_rate"] <= 1)).all() and (rows["accepted_per_s"] >= 0).all()
    assert figure.stat().st_size > 0
