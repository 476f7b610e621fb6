"""Snakemake script: fine-tune the world's trained diffusion prior on offset noise (its second stage)."""

from pathlib import Path

import torch

from preimage.io import write_json
from preimage.training.prior import refine_prior
from preimage.workflow import redirect_output
from preimage.world.generator import WorldSpec, make_split

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    _, images = make_split(WorldSpec.from_config(snakemake.params.world), "prior_train")
    base_dir = Path(snakemake.input[0]).parents[1]
    out_dir = Path(snakemake.output.metrics).parent
    metrics = refine_prior(images, base_dir, snakemake.params.training, snakemake.params.device, out_dir)
    write_json(metrics, snakemake.output.metrics)
