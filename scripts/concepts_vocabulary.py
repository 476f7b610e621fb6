"""Snakemake script: embed the concept vocabulary and the class prompts with the configured CLIP model."""

import torch

from preimage.concepts.embeddings import vocabulary_table
from preimage.concepts.vocabulary import format_vocabulary, load_vocabulary
from preimage.io import atomic_path, write_parquet
from preimage.models import load_clip
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params = snakemake.params
    concepts = load_vocabulary(params.vocabulary, params.prompt_template, params.shapes)
    clip = load_clip(params.clip, device=resolve_device(params.device))
    table = vocabulary_table(clip, concepts, params.classes, params.class_template, params.clip)
    write_parquet(table, snakemake.output.table)
    with atomic_path(snakemake.output.text) as tmp:
        tmp.write_text(format_vocabulary(concepts))
    print(f"{len(concepts)} concepts and {len(params.classes)} class prompts embedded")
