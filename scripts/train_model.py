"""Snakemake script: train one of the world's supervised models (classifier, oracle or CLIP)."""

from pathlib import Path

import torch

from preimage.io import write_json
from preimage.training.classifier import train_classifier
from preimage.training.clip import train_clip
from preimage.training.oracle import train_oracle
from preimage.workflow import redirect_output
from preimage.world.generator import WorldSpec

TRAINERS = {"train_classifier": train_classifier, "train_oracle": train_oracle, "train_clip": train_clip}

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train = TRAINERS[snakemake.rule]
    spec = WorldSpec.from_config(snakemake.params.world)
    out_dir = Path(snakemake.output.metrics).parent
    metrics = train(spec, snakemake.params.training, snakemake.params.device, out_dir)
    write_json(metrics, snakemake.output.metrics)
