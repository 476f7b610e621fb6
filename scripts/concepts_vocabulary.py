"""Snakemake script: embed the concept vocabulary and one prompt per class of the explained classifier."""

import torch

from preimage.concepts.embeddings import vocabulary_table
from preimage.concepts.layout import model_identity
from preimage.concepts.vocabulary import format_vocabulary, load_vocabulary
from preimage.io import atomic_path, write_parquet
from preimage.registry import class_text, resolve_classifier, resolve_clip
from preimage.training.common import resolve_device
from preimage.workflow import redirect_output

with redirect_output(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    params, config = snakemake.params, snakemake.params.config
    device = resolve_device(params.device)
    classifier = resolve_classifier(config, device)
    if not classifier.label_names:
        raise ValueError("models.classifier: the classifier has no label names, so its classes cannot be prompted")
    concepts = load_vocabulary(params.vocabulary, params.prompt_template, params.shapes)
    texts = [class_text(classifier, name) for name in classifier.label_names]
    table = vocabulary_table(resolve_clip(config, device), concepts, classifier.label_names, texts,
                             params.class_template, model_identity(config, "clip"))
    write_parquet(table, snakemake.output.table)
    with atomic_path(snakemake.output.text) as tmp:
        tmp.write_text(format_vocabulary(concepts))
    print(f"{len(concepts)} concepts and {len(texts)} class prompts embedded")
