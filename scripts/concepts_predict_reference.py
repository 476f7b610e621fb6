"""Snakemake script: the explained classifier's predicted class for every reference image, which the
spurious-feature scorer's decision effect compares within the reference."""

from pathlib import Path

import pandas as pd
import torch

from preimage.concepts.baseline import predicted_names
from preimage.concepts.embeddings import read_png_images
from preimage.io import write_parquet
from preimage.registry import resolve_classifier
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    device = resolve_device(snakemake.params.device)
    classifier = resolve_classifier(snakemake.params.config, device)
    members = pd.read_parquet(snakemake.input.members)
    members = members[members["accepted"]]
    root = Path(snakemake.input.members).parent
    images = read_png_images([root / image for image in members["image"]])
    table = pd.DataFrame({"image": members["image"].to_numpy(),
                          "prediction": predicted_names(classifier, images, device, snakemake.params.batch_size)})
    write_parquet(table, snakemake.output[0])
    print(table["prediction"].value_counts().to_string())
