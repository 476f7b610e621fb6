"""Snakemake script: generate every sampler's invariant set for one (source image, objective)."""

from pathlib import Path

import pandas as pd
import torch

from preimage.registry import class_text, load_source_images, resolve_classifier, resolve_perceptual, resolve_prior
from preimage.samplers.spec import from_spec as sampler_from_spec
from preimage.objectives import from_spec as objective_from_spec
from preimage.sets import generate_sets
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    config = snakemake.params.config
    device = resolve_device(config["device"])
    sets = config["sets"]
    source_id, objective_name = snakemake.wildcards.job.rsplit("__", 1)
    sources = pd.read_parquet(snakemake.input.sources)
    row = sources[sources["image_id"] == source_id]
    classifier = resolve_classifier(config, device)
    prior = resolve_prior(config, device, class_name=class_text(classifier, row.iloc[0]["class_name"]))
    source = load_source_images(config, row, prior.image_size)
    perceptual = resolve_perceptual(config, device)
    objective = objective_from_spec(sets["objectives"][objective_name], classifier)
    samplers = {name: sampler_from_spec(spec, perceptual) for name, spec in sets["samplers"].items()}
    out_root = Path(snakemake.output.summaries[0]).parent.parent
    generate_sets(source.to(device), row.iloc[0].to_dict(), objective_name, objective, samplers, prior,
                  sets["members"], sets["seed"], perceptual, out_root)
