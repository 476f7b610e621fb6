"""Snakemake script: the explained classifier's predictions on a world split, for the data-only baseline."""

import numpy as np
import pandas as pd
import torch

from preimage.concepts.baseline import predictions_table
from preimage.io import write_parquet
from preimage.models import load_classifier
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    classifier = load_classifier(snakemake.params.classifier)
    table = predictions_table(pd.read_parquet(snakemake.input.table), np.load(snakemake.input.images), classifier,
                              snakemake.params.device)
    write_parquet(table, snakemake.output[0])
    print(f"accuracy {(table['label'] == table['prediction']).mean():.3f} on {len(table)} images")
