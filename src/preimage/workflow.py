"""Glue between Snakemake rules and the library: model locations and per-rule logs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from preimage.config import prior_first_stage
from preimage.registry import select_sources_from_config
from preimage.world.generator import WorldSpec, stable_hash

WORLD_MODELS = ("classifier", "prior", "clip", "oracle")


def model_dir(config: dict, model: str) -> str:
    """Where a world model trained with this config lives: models/<world>/<model>-<fingerprint>.

    The fingerprint covers the data the model sees and its training settings, so a changed world or
    training config points to a new directory, and Snakemake retrains exactly the models affected.
    """
    if model not in WORLD_MODELS:
        raise ValueError(f"unknown world model {model!r}; expected one of {list(WORLD_MODELS)}")
    spec = WorldSpec.from_config(config["world"])
    data = spec.data_fingerprint(biased=model == "classifier")
    return f"models/{spec.name}/{model}-{stable_hash([data, config['training'][model]])}"


def base_prior_dir(config: dict) -> str:
    """Where the first stage of a prior with a `refine` stage lives: the directory the same settings without
    `refine` train into, so adding a refine stage reuses an already trained prior."""
    stage_one = prior_first_stage(config["training"]["prior"])
    return model_dir({**config, "training": {**config["training"], "prior": stage_one}}, "prior")


@contextmanager
def redirect_output(log_path: str | Path) -> Iterator[None]:
    """Send a rule's stdout, stderr and logging to its log file, so every rule keeps a log."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        try:
            yield
        finally:
            logging.getLogger().removeHandler(handler)
            sys.stdout, sys.stderr = old_out, old_err


def select_sources(config: dict) -> pd.DataFrame:
    """The source images of the invariant sets, as `sets.sources` selects them."""
    return select_sources_from_config(config)


def set_jobs(config: dict) -> list[str]:
    """One generation job per (source image, objective): '<source_id>__<objective>'.

    A label counterfactual whose target is the source's own class is left out: it would be no
    counterfactual at all.
    """
    jobs = []
    for row in select_sources(config).itertuples():
        for name, objective in config["sets"]["objectives"].items():
            if objective.get("kind") == "label" and objective.get("target") == row.class_name:
                continue
            jobs.append(f"{row.image_id}__{name}")
    return jobs


def set_ids(config: dict) -> list[str]:
    """Every invariant set: '<source_id>__<objective>__<sampler>'."""
    return [f"{job}__{sampler}" for job in set_jobs(config) for sampler in config["sets"]["samplers"]]


def set_class(config: dict, set_id: str) -> str:
    """The class of a set's source image (its ground-truth label in the world)."""
    source_id = set_id.split("__")[0]
    sources = select_sources(config).set_index("image_id")
    return str(sources.loc[source_id, "class_name"])
