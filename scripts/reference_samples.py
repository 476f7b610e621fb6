"""Snakemake script: draw the unconstrained reference sample of the prior.

With a class-templated prompt (latent priors), the one prior is re-prompted for each class of the sources
(see `reference_set`).
"""

from pathlib import Path

import pandas as pd
import torch

from preimage.registry import CLASS_NAME, class_text, fill_prompt, model_settings, resolve_classifier, resolve_prior
from preimage.sets import reference_set, write_set
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    config = snakemake.params.config
    reference, device = config["reference"], resolve_device(config["device"])
    settings = model_settings(config, "prior")
    prompts = None
    if CLASS_NAME in settings["prompt"] + settings["negative_prompt"]:
        classifier = resolve_classifier(config, device)
        classes = sorted(pd.read_parquet(snakemake.input.sources)["class_name"].unique())
        texts = {name: class_text(classifier, name) for name in classes}
        prompts = {name: (fill_prompt(settings["prompt"], text), fill_prompt(settings["negative_prompt"], text))
                   for name, text in texts.items()}
    first = next(iter(prompts)) if prompts else None
    prior = resolve_prior(config, device, class_name=texts[first] if prompts else None)
    result = reference_set(prior, reference["members"], reference["seed"], reference["num_steps"], prompts)
    write_set(result, Path(snakemake.output.members).parent)
