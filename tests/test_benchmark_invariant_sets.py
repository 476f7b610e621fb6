"""benchmarks/invariant_sets.py's side-by-side sampler comparison on tiny random models, on the CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import timm
import torch

from preimage.engine.models import load_classifier
from preimage.engine.priors import PixelDiffusionPrior
from preimage.world.training.prior import build_scheduler, build_unet

REPO = Path(__file__).resolve().parents[1]
SIZE = 16


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_invariant_sets", REPO / "benchmarks" / "invariant_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_models(folder: Path) -> tuple[torch.nn.Module, PixelDiffusionPrior]:
    torch.manual_seed(0)
    build_unet(SIZE, {"block_out_channels": [8, 16], "layers_per_block": 1}).save_pretrained(folder / "prior" / "unet")
    build_scheduler().save_pretrained(folder / "prior" / "scheduler")
    model = timm.create_model("resnet10t", pretrained=False, num_classes=2, channels=(8, 16, 32, 64))
    timm.models.save_for_hf(model, str(folder / "classifier"), model_config={"label_names": ["circle", "square"]},
                            model_args={"channels": [8, 16, 32, 64]}, data_config={"input_size": (3, SIZE, SIZE)},
                            safe_serialization=True)
    return load_classifier(str(folder / "classifier")), PixelDiffusionPrior.from_pretrained(folder / "prior")


def test_the_samplers_are_compared_on_the_same_sources_with_their_denoiser_passes(tmp_path) -> None:
    script = load_script()
    classifier, prior = tiny_models(tmp_path)
    sources = script.pd.DataFrame({"image_id": ["a", "b"], "class_name": ["circle", "square"]})
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    samplers = {"guided": {"kind": "guided", "num_steps": 3, "batch_size": 2},
                "rejection": {"kind": "rejection", "num_steps": 3, "batch_size": 2},
                "noise_opt": {"kind": "noise_opt", "num_steps": 2, "iterations": 2, "batch_size": 2}}
    figure = tmp_path / "samplers.png"
    table = script.compare_samplers(samplers, {"kind": "label"}, sources, images, classifier, prior, None, 2, figure)
    rows = table.set_index("sampler")
    assert set(rows.index) == set(samplers) and (rows["sets"] == 2).all()
    assert rows.loc["rejection", "unet_passes_per_member"] == 3
    assert rows.loc["noise_opt", "unet_passes_per_member"] >= 2 * 2  # every iteration runs the whole sampler
    assert ((rows["acceptance_rate"] >= 0) & (rows["acceptance_rate"] <= 1)).all() and (rows["accepted_per_s"] >= 0).all()
    assert figure.stat().st_size > 0
