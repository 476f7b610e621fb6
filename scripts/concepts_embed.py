"""Snakemake script: CLIP embeddings of the accepted members and sources of a group's sets (or of the reference)."""

import torch

from preimage.concepts.embeddings import embed_directories, load_or_embed
from preimage.models import load_clip
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    directories, model = snakemake.params.set_dirs, snakemake.params.clip
    clip = load_clip(model, device=resolve_device(snakemake.params.device))
    table = load_or_embed(snakemake.output[0], model,
                          lambda: embed_directories(directories, clip, model, snakemake.params.batch_size))
    print(f"{len(table)} images of {len(directories)} directories embedded")
