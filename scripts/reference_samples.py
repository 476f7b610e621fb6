"""Snakemake script: draw the unconstrained reference sample of the prior.

With a class-templated prompt (latent priors), the reference is drawn per class, so that concept
enrichment compares a set with prior samples of the same prompt rather than detecting the prompt.
"""

from pathlib import Path

import pandas as pd
import torch

from preimage.registry import class_text, model_settings, resolve_classifier, resolve_prior
from preimage.samplers import RejectionSampler
from preimage.sets import InvariantSet, sample, summarise, unconstrained, write_set
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    config = snakemake.params.config
    reference, device = config["reference"], resolve_device(config["device"])
    sources = pd.read_parquet(snakemake.input.sources)
    templated = "{class_name}" in model_settings(config, "prior")["prompt"]
    classes = sorted(sources["class_name"].unique()) if templated else [None]
    classifier = resolve_classifier(config, device) if templated else None
    sampler = RejectionSampler(num_steps=reference["num_steps"], batch_size=32)
    parts = []
    for i, class_name in enumerate(classes):
        prior = resolve_prior(config, device, class_name=class_name and class_text(classifier, class_name))
        blank = torch.zeros(1, 3, prior.image_size, prior.image_size, device=prior.device)
        parts.append(sample(unconstrained(), blank, prior, sampler, -(-reference["members"] // len(classes)),
                            seed=reference["seed"] + i, set_id="reference", source_id="none",
                            source_class=class_name or ""))
    members = pd.concat([part.members for part in parts], ignore_index=True)
    members["image"] = [f"members/{i:03d}.png" for i in range(len(members))]
    members["objective_kind"] = "none"
    images = torch.cat([part.images for part in parts])
    summary = summarise(members, images, None)
    write_set(InvariantSet(members, images, parts[0].source, summary), Path(snakemake.output.members).parent)
