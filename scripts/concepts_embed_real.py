"""Snakemake script: CLIP embeddings of every real image of a split (a world split or the run's sources), with
its `class_name`."""

import numpy as np
import pandas as pd
import torch

from preimage.concepts.embeddings import embed_array, load_or_embed
from preimage.concepts.layout import model_identity
from preimage.registry import real_image_table, resolve_clip
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    model = model_identity(params.config, "clip")
    rows = real_image_table(pd.read_parquet(snakemake.input.table))
    table = load_or_embed(snakemake.output[0], model, lambda: embed_array(
        rows, np.load(snakemake.input.images), resolve_clip(params.config, resolve_device(params.device)), model,
        params.batch_size))
    print(f"{len(table)} images embedded")
