"""The engine on a CUDA GPU: every model on the prior's device, artifacts on the CPU. Skipped without a GPU
(tests/conftest.py); run them on a GPU machine with `pytest -m cuda`."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

import preimage
from preimage.engine.objectives import label, lowpass, neuron
from preimage.engine.samplers import GuidedSampler, NoiseOptSampler, RejectionSampler
from preimage.engine.sets import generate_sets, read_set, reference_set
from preimage.pipeline.config import load_config
from preimage.pipeline.models import (
    resolve_classifier,
    resolve_perceptual,
    resolve_prior,
)

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.cuda
DEVICE = torch.device(os.environ.get("PREIMAGE_TEST_DEVICE", "cuda"))  # "cpu" checks these tests themselves


@pytest.fixture(scope="module")
def world_models() -> tuple[torch.nn.Module, preimage.engine.priors.DiffusionPrior, torch.nn.Module]:
    """The world's committed classifier, prior and (random-trunk) LPIPS, loaded onto the GPU by the registry."""
    config = load_config(REPO / "config.yaml")
    return resolve_classifier(config, DEVICE), resolve_prior(config, DEVICE), resolve_perceptual(config, DEVICE)


@pytest.mark.parametrize("sampler", [GuidedSampler(num_steps=10, batch_size=8), RejectionSampler(num_steps=10),
                                     NoiseOptSampler(num_steps=2, iterations=3)], ids=lambda s: type(s).__name__)
def test_sets_sample_on_the_gpu_and_land_on_the_cpu(world_models, sampler) -> None:
    classifier, prior, perceptual = world_models
    assert prior.device.type == DEVICE.type and next(classifier.parameters()).device.type == DEVICE.type
    source = torch.rand(1, 3, prior.image_size, prior.image_size)  # a CPU source: sample moves it
    for objective in (label(classifier), neuron(classifier, "layer4.0.bn2", unit=0), lowpass(factor=8)):
        result = preimage.sample(objective, source, prior, sampler, n=8, seed=0, perceptual=perceptual)
        assert result.images.device.type == "cpu" and result.images.shape == (8, 3, 32, 32)
        assert math.isfinite(result.summary["diversity"]) or result.summary["accepted"] < 2
        assert result.members["lpips_to_source"].notna().all()


def test_stored_sets_and_the_reference_on_the_gpu(world_models, tmp_path) -> None:
    classifier, prior, perceptual = world_models
    source = torch.rand(1, 3, prior.image_size, prior.image_size, device=DEVICE)
    row = {"image_id": "random", "class_name": "circle"}
    folders = generate_sets(source, row, "label", label(classifier), {"guided": GuidedSampler(num_steps=10)}, prior,
                            4, 0, perceptual, tmp_path)
    stored = read_set(folders[0])
    assert len(stored.members) == 4 and stored.images.device.type == "cpu"
    reference = reference_set(prior, n=8, seed=1, num_steps=5)
    assert reference.images.shape == (8, 3, 32, 32) and reference.members["accepted"].all()
