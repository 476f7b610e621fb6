"""Unguided draws of the world prior: how close each solver and step count comes to the sampling ODE's solution.

Every chain walks the same `--draws` noises from pure noise (`DiffusionPrior.solve`, as the rejection pool and
the reference draw them); the first chain is the yardstick (by default 50 DPM-Solver++ steps, close to the ODE's
exact solution). For each chain the world's oracle reads every draw's attributes, and the script prints the CPU
seconds of the chain, the share of valid images, each attribute's total-variation distance from the world's
unbiased frequencies, and the share of draws whose attributes all equal the yardstick's draw from the same noise.
Two draws of 512 from other noise differ by up to about 0.05 in an attribute's distance (docs/samplers.md).

With --acceptance it also prints what the chain does to the rejection sets: each objective of `sets.objectives`
bound to each of the run's sources (as the set jobs bind them) tests every draw, and each chain's acceptance is
printed with its paired difference from the yardstick's and that difference's standard error over the draws. A
rejection set of 32 members estimates its acceptance to several points; this compares the chains' expected
acceptance on the same noise.

Usage: python benchmarks/unguided_solvers.py [--config config.yaml] [--draws 512] [--seed 5] [--threads 1]
       [--chains dpmsolver++:50 ddim:25 dpmsolver++:12 unipc:8 ...] [--acceptance]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from preimage.engine.objectives import Objective
from preimage.engine.objectives.spec import from_config as objective_from_config
from preimage.engine.priors import DiffusionPrior
from preimage.engine.priors.base import SOLVERS
from preimage.pipeline.config import load_config, models_named
from preimage.pipeline.models import model_dir, resolve_classifier, resolve_named_models, resolve_prior
from preimage.pipeline.sources import load_source_images
from preimage.pipeline.workflow import select_sources
from preimage.utils.devices import device_name
from preimage.utils.images import to_tensor, to_uint8
from preimage.world.generator import WorldSpec
from preimage.world.oracle import load_oracle, read_attributes
from preimage.world.training.prior import oracle_scores

REPO = Path(__file__).resolve().parents[1]
BATCH = 32  # the reference's and the pool's batch (`reference_set`)


def parse_chain(text: str) -> tuple[str, int]:
    """("unipc", 8) from "unipc:8"."""
    solver, _, steps = text.partition(":")
    if solver not in SOLVERS or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"a chain is SOLVER:STEPS with SOLVER one of {list(SOLVERS)}, got {text!r}")
    return solver, int(steps)


def draw(prior: DiffusionPrior, noise: torch.Tensor, solver: str, num_steps: int) -> np.ndarray:
    """The draws from `noise` along one chain, (n, H, W, 3) uint8 as the pipeline saves them."""
    timesteps = prior.timesteps(num_steps)
    with torch.inference_mode():
        return to_uint8(torch.cat([prior.decode(prior.solve(z, timesteps, solver)) for z in noise.split(BATCH)]))


def categorical(attributes: pd.DataFrame) -> pd.DataFrame:
    """The oracle's categorical readings (its regression heads left out)."""
    return attributes.select_dtypes(exclude="number")


def run_sources(config: dict, image_size: int) -> torch.Tensor:
    """The run's source images (N, 3, S, S) in [0, 1], as the set jobs load them."""
    return load_source_images(config, select_sources(config), image_size)


def bound_objectives(config: dict, sources: torch.Tensor) -> dict[str, list[Objective]]:
    """{objective name: that objective of `sets.objectives` bound to each of `sources` (`run_sources`)}, built and
    bound as the set jobs do, on the CPU."""
    classifier = resolve_classifier(config, "cpu")
    objectives = config["sets"]["objectives"]
    named = resolve_named_models(config, "cpu", models_named(objectives))
    bound = {}
    for name, spec in objectives.items():
        objective = objective_from_config(spec, classifier, named, where=f"sets.objectives.{name}")
        with torch.no_grad():
            bound[name] = [objective.bind(source[None]) for source in sources]
    return bound


def acceptance(bound: dict[str, list[Objective]], images: np.ndarray) -> dict[str, np.ndarray]:
    """{objective name: (n,) the share of the run's sources whose objective accepts each draw}."""
    pixels = to_tensor(images)
    with torch.no_grad():
        return {name: torch.stack([torch.cat([objective.accept(batch) for batch in pixels.split(BATCH)])
                                   for objective in objectives]).float().mean(0).numpy()
                for name, objectives in bound.items()}


def column_width(chains: list[str]) -> int:
    """The width of a table column per chain: 24 characters, or a chain's name and two spaces."""
    return max(24, *(len(chain) + 2 for chain in chains))


def print_acceptance(chains: list[str], shares: list[dict[str, np.ndarray]], title: str) -> None:
    """Each objective's acceptance per chain (%) under `title`, after the first chain with its paired difference
    from the first one and that difference's standard error over the draws (or members)."""
    draws = len(next(iter(shares[0].values())))
    width = column_width(chains)
    print(f"\n{title}; after the first chain, the paired difference from it +- its standard error")
    print(f"{'objective':16s}" + "".join(chain.rjust(width) for chain in chains))
    for name in shares[0]:
        cells = [f"{100 * shares[0][name].mean():.1f}".rjust(width)]
        for share in shares[1:]:
            difference = 100 * (share[name] - shares[0][name])
            error = difference.std(ddof=1) / np.sqrt(draws) if draws > 1 else float("nan")
            cells.append(f"{100 * share[name].mean():.1f} ({difference.mean():+.1f} +- {error:.1f})".rjust(width))
        print(f"{name:16s}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--draws", type=int, default=512)
    parser.add_argument("--seed", type=int, default=5, help="the noises' seed (the run's reference uses 1, its pool 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (a pool or reference job runs on one core)")
    parser.add_argument("--chains", type=parse_chain, nargs="+", metavar="SOLVER:STEPS",
                        default=[("dpmsolver++", 50), ("ddim", 25), ("dpmsolver++", 12), ("unipc", 10), ("unipc", 8)])
    parser.add_argument("--acceptance", action="store_true",
                        help="also each objective's rejection acceptance on the run's sources, per chain")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    os.chdir(REPO)  # model folders are relative to the repository, as in the workflow
    spec = WorldSpec.from_config(config["world"])
    prior = resolve_prior(config, "cpu")
    oracle_dir = model_dir(config, "oracle")
    if not Path(oracle_dir).is_dir():
        parser.error(f"{oracle_dir}: no such folder; train the world's oracle with "
                     f"`snakemake --cores 2 {oracle_dir}/model.safetensors`")
    oracle = load_oracle(oracle_dir)
    bound = bound_objectives(config, run_sources(config, prior.image_size)) if args.acceptance else {}
    noise = prior.sample_noise(args.draws, torch.Generator().manual_seed(args.seed))
    print(f"CPU: {device_name('cpu')}; {args.threads} thread(s); UNet in {prior.compute_dtype}; {args.draws} draws "
          f"(seed {args.seed}) per chain; the yardstick: {args.chains[0][0]} {args.chains[0][1]} steps")
    names = None
    yardstick = None
    shares = []
    for solver, num_steps in args.chains:
        start = time.process_time()
        images = draw(prior, noise, solver, num_steps)
        seconds = time.process_time() - start
        scores = oracle_scores(images, oracle, spec)
        attributes = categorical(read_attributes(oracle, to_tensor(images), spec.shapes))
        yardstick = attributes if yardstick is None else yardstick
        same = (attributes == yardstick).all(axis=1).mean()
        if names is None:
            names = list(scores["total_variation"])
            print(f"chain            CPU s  valid  TV: {' / '.join(names)}  same attributes as the yardstick")
        distances = " / ".join(f"{scores['total_variation'][name]:.3f}" for name in names)
        print(f"{solver + ' ' + str(num_steps):15s} {seconds:6.1f}  {100 * scores['valid_fraction']:5.1f}  "
              f"{distances}  {100 * same:.1f} %", flush=True)
        if bound:
            shares.append(acceptance(bound, images))
    if bound:
        sources = len(next(iter(bound.values())))
        print_acceptance([f"{solver} {num_steps}" for solver, num_steps in args.chains], shares,
                         f"rejection acceptance (%): each objective on each of the run's {sources} sources, tested on "
                         "every draw")


if __name__ == "__main__":
    main()
