"""Snakemake script: score prior samples with the oracle and save a grid of them."""

from pathlib import Path

import numpy as np
import torch

from preimage.io import image_grid, write_json, write_png
from preimage.training.prior import evaluate_prior
from preimage.workflow import redirect_output
from preimage.world.generator import WorldSpec

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    evaluation = snakemake.params.evaluation
    metrics, samples = evaluate_prior(
        Path(snakemake.input.prior).parents[1],
        Path(snakemake.input.oracle).parent,
        WorldSpec.from_config(snakemake.params.world),
        evaluation["prior_samples"],
        evaluation["prior_sampling_steps"],
        snakemake.params.device,
    )
    write_json(metrics, snakemake.output.metrics)
    grid = image_grid(samples[:64], columns=8)
    write_png(np.kron(grid, np.ones((3, 3, 1), dtype=np.uint8)), snakemake.output.samples)
