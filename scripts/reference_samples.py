"""Snakemake script: draw the unconstrained reference sample of the prior.

With a class-templated prompt (latent priors), the reference is drawn per class (see `reference_set`).
"""

from pathlib import Path

import pandas as pd
import torch

from preimage.registry import class_text, model_settings, resolve_classifier, resolve_prior
from preimage.sets import reference_set, write_set
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    config = snakemake.params.config
    reference, device = config["reference"], resolve_device(config["device"])
    if "{class_name}" in model_settings(config, "prior")["prompt"]:
        classifier = resolve_classifier(config, device)
        classes = sorted(pd.read_parquet(snakemake.input.sources)["class_name"].unique())
        priors = {name: resolve_prior(config, device, class_name=class_text(classifier, name)) for name in classes}
    else:
        priors = {"": resolve_prior(config, device)}
    result = reference_set(priors, reference["members"], reference["seed"], reference["num_steps"])
    write_set(result, Path(snakemake.output.members).parent)
