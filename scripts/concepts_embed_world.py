"""Snakemake script: CLIP embeddings of every real image of a world split, with its attribute row."""

import numpy as np
import pandas as pd
import torch

from preimage.concepts.embeddings import embed_array, load_or_embed
from preimage.models import load_clip
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    model = snakemake.params.clip
    clip = load_clip(model, device=resolve_device(snakemake.params.device))
    rows = pd.read_parquet(snakemake.input.table, columns=["image_id", "label", "shape"])
    table = load_or_embed(snakemake.output[0], model, lambda: embed_array(
        rows, np.load(snakemake.input.images), clip, model, snakemake.params.batch_size))
    print(f"{len(table)} images embedded")
