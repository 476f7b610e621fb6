"""The latent world model's unconditional attribute frequencies over several draws (issue 23).

One draw of 256 unconditional samples reads the shape TV to about +-0.02, so a model is judged on the mean and range
of several draws with different seeds. For each latent model folder (default: the one config.yaml's
`training.latent` trains), samples `--draws` x `--samples` images from the empty prompt without guidance (as
`evaluate_latent` does), and prints per draw the oracle-valid fraction and every attribute's total variation from
the unbiased split, then the mean and range of each and the shapes' frequencies over all draws, with the CPU or GPU
named.

Usage: python benchmarks/latent_shapes.py [FOLDER ...] [--draws 4] [--samples 256] [--steps 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from preimage.engine.priors import LatentDiffusionPrior
from preimage.pipeline.config import read_yaml, validate_config
from preimage.pipeline.models import model_dir
from preimage.utils.devices import device_name, resolve_device
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec
from preimage.world.oracle import load_oracle, read_attributes
from preimage.world.training.latent import prompted_samples
from preimage.world.training.prior import oracle_scores

REPO = Path(__file__).resolve().parents[1]


def draw_scores(prior: LatentDiffusionPrior, oracle: torch.nn.Module, spec: WorldSpec, samples: int, steps: int,
                seed: int) -> tuple[dict, pd.Series]:
    """One draw's validity and total variations, and the oracle's shape counts among its valid samples."""
    images = prompted_samples(prior, "", samples, steps, seed)
    scores = oracle_scores(images, oracle, spec)
    read = read_attributes(oracle, to_tensor(images), spec.shapes)
    shapes = read.loc[read["valid"] == "valid", "shape"].value_counts().reindex(spec.shapes, fill_value=0)
    return {"seed": seed, "valid": scores["valid_fraction"], **scores["total_variation"]}, shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help="latent model folders (default: config.yaml's training.latent)")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    config = validate_config(read_yaml(REPO / "config.yaml"), "config.yaml")
    device = resolve_device(config["device"])
    spec = WorldSpec.from_config(config["world"])
    oracle = load_oracle(REPO / model_dir(config, "oracle"))
    folders = args.folders or [str(REPO / model_dir(config, "latent"))]
    print(f"device: {device_name(device)}, torch threads {torch.get_num_threads()}")
    for folder in folders:
        prior = LatentDiffusionPrior.from_pretrained(folder).to(device)
        start = time.perf_counter()
        rows, counts = zip(*(draw_scores(prior, oracle, spec, args.samples, args.steps, seed)
                             for seed in range(args.draws)))
        table = pd.DataFrame(rows).set_index("seed")
        summary = pd.DataFrame({"mean": table.mean(), "min": table.min(), "max": table.max()})
        shapes = sum(counts)
        print(f"\n{folder}: {args.draws} draws of {args.samples} unconditional samples, {args.steps} steps, "
              f"{time.perf_counter() - start:.0f} s")
        print(table.to_markdown(floatfmt=".3f"))
        print(summary.to_markdown(floatfmt=".3f"))
        print("shapes among valid samples: " + ", ".join(
            f"{shape} {share:.3f}" for shape, share in (shapes / shapes.sum()).items()))
        print(f"shape TV of the pooled draws: {0.5 * np.abs(shapes / shapes.sum() - 1 / len(spec.shapes)).sum():.3f}")


if __name__ == "__main__":
    main()
