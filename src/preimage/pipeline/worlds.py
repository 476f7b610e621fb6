"""Run the pipeline on drawn worlds (the many-world benchmark, `snakemake benchmark_worlds`), each in its own folder.

A world's folder (`results/benchmark_worlds/seed-<seed>/<world>/`) is a working directory of its own: its
`config.yaml` is the run's config with the benchmark's overlay (`benchmark_worlds.config`) and the world's
shortcuts, and its `models/<world name>/` links every model folder of the run's `models/<world name>/`, so the
shared models (prior, CLIP model, regressor) are the committed ones and only the classifier, whose fingerprint
covers the shortcuts, is trained there. Snakemake runs the checkout's Snakefile in that folder (rules find their
scripts beside the rule files; config.yaml and models/ are read from the working directory) up to the evaluation,
with the package on PYTHONPATH that this process imported, so a world runs the same code as the benchmark.

A finished world (its `benchmark.json`, written last, naming the hash of the config it ran) is not run again; an
interrupted one resumes (`--rerun-incomplete`), keeping what it finished.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

import preimage
from preimage.pipeline.config import validate_config, world_models
from preimage.pipeline.models import model_dir
from preimage.utils.hashing import stable_hash
from preimage.utils.io import atomic_path, write_json
from preimage.world.sampling import SampledWorld

SECTION = "benchmark_worlds"
EVALUATION = "results/report/evaluation.parquet"  # what a world's run is asked for (rule report_evaluation)
PAIRS = "results/report/evaluation_pairs.parquet"
DONE = "benchmark.json"  # written when a world's run has finished: its config hash and wall time
LOG = "snakemake.log"


def merge_overlay(base: dict, overlay: dict) -> dict:
    """A copy of `base` updated by `overlay` as Snakemake merges a --configfile: mappings key by key, anything else
    (lists too) replaced; null entries are kept, for `validate_config` to remove."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def world_config(config: dict, world: SampledWorld) -> dict:
    """The validated config of a drawn world: the run's `config` without its benchmark section, then the
    benchmark's overlay (`benchmark_worlds.config`), then the world's shortcuts and report title."""
    base = {key: value for key, value in config.items() if key != SECTION}
    merged = merge_overlay(base, config[SECTION]["config"])
    merged = merge_overlay(merged, world.overlay(f"preimage benchmark world, seed {world.seed}"))
    merged = validate_config(merged, source=f"{SECTION}.config with the shortcuts of {world.name}")
    if not merged["report"]["evaluate"]:
        raise ValueError(f"{SECTION}.config: report.evaluate is false; the benchmark scores each world's flags")
    return merged


def retrained_models(config: dict, root: Path) -> list[str]:
    """The world models other than the classifier that `config` (a drawn world's) would train because their
    folder is not under `root`: each world would then retrain them. None with the committed models."""
    return [f"models.{kind} ({model_dir(config, kind)})" for kind in world_models(config)
            if kind != "classifier" and not (root / model_dir(config, kind)).is_dir()]


def prepare_folder(folder: Path, config: dict, root: Path) -> None:
    """Write the world's config.yaml into `folder` and link the model folders of `root`/models/<world name>/
    into its own (a folder it has already, such as its trained classifier, stays)."""
    name = config["world"]["name"]
    models = folder / "models" / name
    models.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    for source in sorted((root / "models" / name).iterdir()):
        link = models / source.name
        if source.is_dir() and not link.exists() and not link.is_symlink():
            link.symlink_to(source.resolve(), target_is_directory=True)


def finished(folder: Path, config: dict) -> dict | None:
    """The world's `benchmark.json` when it finished with this config and its evaluation is there, else None."""
    done = folder / DONE
    if not done.is_file() or not (folder / EVALUATION).is_file():
        return None
    record = json.loads(done.read_text())
    return record if record.get("config_hash") == stable_hash(config) else None


def run_world(folder: Path, config: dict, snakefile: str | Path, cores: int) -> dict:
    """Run the pipeline in `folder` up to the evaluation (Snakemake's output to its snakemake.log) and write its
    benchmark.json: the config's hash, the wall time, and whether an earlier run had started it."""
    resumed = (folder / ".snakemake").is_dir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root(), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "snakemake", "-s", str(Path(snakefile).resolve()), "--cores", str(cores),
               "--rerun-incomplete", "--nolock", EVALUATION, PAIRS]
    start = time.perf_counter()
    with open(folder / LOG, "a") as log:
        status = subprocess.run(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{folder.name}: the pipeline failed (exit status {status}); see {folder / LOG}")
    record = {"world": folder.name, "config_hash": stable_hash(config), "seconds": round(seconds, 1),
              "resumed": resumed, "cores": cores}
    write_json(record, folder / DONE)
    return record


def package_root() -> str:
    """The folder the running preimage package was imported from (src/ of a checkout), for the worlds' runs."""
    return str(Path(preimage.__file__).resolve().parents[1])
