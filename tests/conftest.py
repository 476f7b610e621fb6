"""Shared fixtures: a tiny world configuration and the repository's own config."""

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
