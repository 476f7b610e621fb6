"""Snakemake script: draw the unconstrained reference sample of the prior."""

from pathlib import Path

import torch

from preimage.priors import PixelDiffusionPrior
from preimage.samplers import RejectionSampler
from preimage.sets import sample, unconstrained, write_set
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    reference = snakemake.params.reference
    prior = PixelDiffusionPrior.from_pretrained(Path(snakemake.input.prior).parents[1]).to(resolve_device(snakemake.params.device))
    blank = torch.zeros(1, 3, prior.image_size, prior.image_size, device=prior.device)
    drawn = sample(unconstrained(), blank, prior, RejectionSampler(num_steps=reference["num_steps"], batch_size=32),
                   reference["members"], seed=reference["seed"], set_id="reference", source_id="none")
    drawn.members["objective_kind"] = drawn.summary["objective_kind"] = "none"
    write_set(drawn, Path(snakemake.output.members).parent)
