"""Shared fixtures: a tiny world configuration, the repository's own config, tiny random models."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked `cuda` where torch sees no CUDA GPU (CI has none; a GPU machine runs them).
    PREIMAGE_TEST_DEVICE=cpu runs them on the CPU instead, to check the tests themselves."""
    import torch

    if torch.cuda.is_available() or os.environ.get("PREIMAGE_TEST_DEVICE") == "cpu":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config() -> dict:
    """A fresh copy of the repository's config.yaml."""
    with open(REPO / "config.yaml") as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def tiny_world(config) -> dict:
    """The default world with small splits, for tests that render or train."""
    world = copy.deepcopy(config["world"])
    world["splits"] = {name: 64 for name in world["splits"]}
    return world


TINY_SIZE = 16  # the side of `tiny_pixel_models`' images


@pytest.fixture
def tiny_pixel_models(tmp_path) -> tuple:
    """A randomly initialised two-class timm classifier ("circle", "square") and pixel prior on 16 x 16 images,
    saved and loaded the way the world's are."""
    import timm
    import torch

    from preimage.engine.models import load_classifier
    from preimage.engine.priors import PixelDiffusionPrior
    from preimage.world.training.prior import build_scheduler, build_unet

    torch.manual_seed(0)
    build_unet(TINY_SIZE, {"block_out_channels": [8, 16], "layers_per_block": 1}).save_pretrained(tmp_path / "prior" / "unet")
    build_scheduler().save_pretrained(tmp_path / "prior" / "scheduler")
    model = timm.create_model("resnet10t", pretrained=False, num_classes=2, channels=(8, 16, 32, 64))
    timm.models.save_for_hf(model, str(tmp_path / "classifier"), model_config={"label_names": ["circle", "square"]},
                            model_args={"channels": [8, 16, 32, 64]}, data_config={"input_size": (3, TINY_SIZE, TINY_SIZE)},
                            safe_serialization=True)
    return load_classifier(str(tmp_path / "classifier")), PixelDiffusionPrior.from_pretrained(tmp_path / "prior")
