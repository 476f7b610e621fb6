"""Snakemake script: CLIP embeddings of the accepted members and sources of a group's sets (or of the reference)."""

import torch

from preimage.concepts.embeddings import embed_directories, load_or_embed
from preimage.concepts.layout import model_identity
from preimage.registry import resolve_clip
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    model = model_identity(params.config, "clip")
    table = load_or_embed(snakemake.output[0], model, lambda: embed_directories(
        params.set_dirs, resolve_clip(params.config, resolve_device(params.device)), model, params.batch_size))
    print(f"{len(table)} images of {len(params.set_dirs)} directories embedded")
