"""Snakemake script: generate every sampler's invariant set for one (source image, objective)."""

from pathlib import Path

import pandas as pd
import torch

from preimage.data import load_images
from preimage.models import load_classifier, load_lpips
from preimage.priors import PixelDiffusionPrior
from preimage.samplers.spec import from_spec as sampler_from_spec
from preimage.sets import generate_sets, objective_from_config
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output
from preimage.world.generator import WorldSpec

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    device = resolve_device(snakemake.params.device)
    sets = snakemake.params.sets
    source_id, objective_name = snakemake.wildcards.job.rsplit("__", 1)
    sources = pd.read_parquet(snakemake.input.sources)
    row = sources[sources["image_id"] == source_id]
    source = load_images(row, snakemake.params.world["image_size"], world=WorldSpec.from_config(snakemake.params.world))
    classifier = load_classifier(str(Path(snakemake.input.classifier).parent), device=device)
    perceptual = load_lpips(**snakemake.params.perceptual, device=device)
    prior = PixelDiffusionPrior.from_pretrained(Path(snakemake.input.prior).parents[1]).to(device)
    objective = objective_from_config(sets["objectives"][objective_name], classifier, classifier.label_names)
    samplers = {name: sampler_from_spec(spec, perceptual) for name, spec in sets["samplers"].items()}
    out_root = Path(snakemake.output.summaries[0]).parent.parent
    generate_sets(source.to(device), row.iloc[0].to_dict(), objective_name, objective, samplers, prior,
                  sets["members"], sets["seed"], perceptual, out_root)
