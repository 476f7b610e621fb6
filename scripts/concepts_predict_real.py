"""Snakemake script: the explained classifier's predictions on a real-image split, for the data-only baseline."""

import numpy as np
import pandas as pd
import torch

from preimage.concepts.baseline import predictions_table
from preimage.io import write_parquet
from preimage.registry import real_image_table, resolve_classifier
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    device = resolve_device(snakemake.params.device)
    classifier = resolve_classifier(snakemake.params.config, device)
    rows = real_image_table(pd.read_parquet(snakemake.input.table))
    table = predictions_table(rows, np.load(snakemake.input.images), classifier, device)
    write_parquet(table, snakemake.output[0])
    print(f"accuracy {(table['label'] == table['prediction']).mean():.3f} on {len(table)} images")
