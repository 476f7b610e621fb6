"""CLIP embeddings of generated members, sources, reference samples and real images, cached in Parquet.

An embedding table has one row per image with identifying columns, a `model` column naming the CLIP
model that made it and an `embedding` column (list<float32>, L2-normalised). A list column keeps one
table shape whatever the CLIP width; `embedding_matrix` turns it back into an (N, D) array. Tables of
set directories hold set_id, role ("member" or "source"), image (relative to the set directory) and
path (the PNG as reachable from where it was embedded, for figures and reports).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from preimage.analysis.concepts.vocabulary import Concept
from preimage.engine.set_files import MEMBERS_FILE, SOURCE_FILE
from preimage.utils.images import to_tensor
from preimage.utils.io import write_parquet

if TYPE_CHECKING:  # torch, open_clip and timm load only where a model does, not to read an embedding table
    import torch

    from preimage.engine.models.clip import ClipModel

EMBEDDING = "embedding"
log = logging.getLogger(__name__)


def read_png_images(paths: Sequence[str | Path]) -> torch.Tensor:
    """(B, 3, H, W) float images in [0, 1] from PNG files of one size."""
    if not paths:
        raise ValueError("paths: expected at least one image file")
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"images must share one size to be batched, got sizes {sorted(sizes)}")
    return to_tensor(np.stack(arrays))


def embed_images(clip: ClipModel, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """(N, D) float32 L2-normalised CLIP image embeddings, computed in batches."""
    import torch

    from preimage.utils.devices import module_device

    device = module_device(clip)
    with torch.no_grad():
        parts = [clip.encode_images(batch.to(device)).float().cpu() for batch in images.split(batch_size)]
    return torch.cat(parts).numpy().astype(np.float32)


def embed_texts(clip: ClipModel, texts: Sequence[str]) -> np.ndarray:
    """(T, D) float32 L2-normalised CLIP text embeddings."""
    import torch

    with torch.no_grad():
        return clip.encode_texts(list(texts)).float().cpu().numpy().astype(np.float32)


def logit_scale(clip: ClipModel) -> float:
    """The temperature CLIP multiplies cosine similarities by before a zero-shot softmax."""
    return float(clip.model.logit_scale.exp())


def with_embeddings(table: pd.DataFrame, embeddings: np.ndarray, model: str) -> pd.DataFrame:
    """`table` plus the `model` and `embedding` columns, one embedding per row."""
    if len(table) != len(embeddings):
        raise ValueError(f"got {len(embeddings)} embeddings for {len(table)} rows")
    out = table.reset_index(drop=True).copy()
    out["model"] = model
    out[EMBEDDING] = list(np.asarray(embeddings, dtype=np.float32))
    return out


def embedding_matrix(table: pd.DataFrame) -> np.ndarray:
    """(N, D) float32 array of a table's `embedding` column."""
    if EMBEDDING not in table:
        raise ValueError(f"table has no {EMBEDDING!r} column; columns are {list(table.columns)}")
    if table.empty:
        raise ValueError("embedding table is empty")
    return np.stack(table[EMBEDDING].to_numpy()).astype(np.float32)


def member_images(directory: str | Path) -> pd.DataFrame:
    """Accepted members of a set (or of the reference) plus its source image when there is one.

    Columns: set_id, role ("member" or "source"), image (relative to `directory`), path.
    """
    directory = Path(directory)
    members = pd.read_parquet(directory / MEMBERS_FILE, columns=["set_id", "accepted", "image"])
    rows = members.loc[members["accepted"], ["set_id", "image"]].assign(role="member")
    if (directory / SOURCE_FILE).is_file():
        set_id = members["set_id"].iloc[0] if len(members) else directory.name
        rows = pd.concat([pd.DataFrame({"set_id": [set_id], "image": [SOURCE_FILE], "role": ["source"]}), rows])
    rows["path"] = [str(directory / image) for image in rows["image"]]
    return rows[["set_id", "role", "image", "path"]].reset_index(drop=True)


def embed_directories(directories: Sequence[str | Path], clip: ClipModel, model: str, batch_size: int = 256
                      ) -> pd.DataFrame:
    """One embedding table for set directories (results/sets/<id>) or results/reference."""
    if not directories:
        raise ValueError("directories: expected at least one set directory")
    rows = pd.concat([member_images(d) for d in directories], ignore_index=True)
    return with_embeddings(rows, embed_files(clip, rows["path"].tolist(), batch_size), model)


def embed_files(clip: ClipModel, paths: Sequence[str | Path], batch_size: int = 256) -> np.ndarray:
    """(N, D) embeddings of image files, read batch by batch so large sets never sit in memory at once."""
    if not paths:
        return np.zeros((0, 0), dtype=np.float32)
    batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    return np.concatenate([embed_images(clip, read_png_images(batch), batch_size) for batch in batches])


def sets_rows(table: pd.DataFrame, set_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of an embedding table that belong to the sets `set_ids` (one group's rows of the table of every
    group's sets), in table order."""
    rows = table[table["set_id"].isin(set_ids)].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"no embedded images of the sets {list(set_ids)[:3]}... in the embedding table")
    return rows


def generated_members(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of generated (accepted) members, without the sources an embedding table also holds."""
    return table[table["role"] == "member"].reset_index(drop=True)


def embed_array(table: pd.DataFrame, images: np.ndarray, clip: ClipModel, model: str, batch_size: int = 256
                ) -> pd.DataFrame:
    """Embedding table of real images: `table`'s rows (e.g. a world split) with their uint8 pixels."""
    return with_embeddings(table, embed_images(clip, to_tensor(images), batch_size), model)


def load_or_embed(path: str | Path, model: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The cached table at `path` if it was made by `model`, else `compute()` written there atomically."""
    path = Path(path)
    if path.is_file():
        cached = pd.read_parquet(path)
        if cached.empty or set(cached["model"]) == {model}:
            return cached
        log.info("%s was embedded with %s, not %s: recomputing", path, sorted(set(cached["model"])), model)
    table = compute()
    write_parquet(table, path)
    return table


@dataclass(frozen=True)
class EmbeddedVocabulary:
    """Concept and class-prompt text embeddings of one CLIP model, as the scorers need them."""

    concepts: tuple[str, ...]
    prompts: tuple[str, ...]
    text: np.ndarray
    """(T, D) concept embeddings."""
    classes: tuple[str, ...]
    """Class names as labels and set groups use them ("square", "n01440764")."""
    class_texts: tuple[str, ...]
    """How text names each class ("square", "tench")."""
    class_text: np.ndarray
    """(K, D) embeddings of the class prompts, for zero-shot class decisions."""
    logit_scale: float

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> EmbeddedVocabulary:
        concepts, classes = table[table["kind"] == "concept"], table[table["kind"] == "class"]
        if concepts.empty:
            raise ValueError("vocabulary table has no rows of kind 'concept'")
        return cls(
            concepts=tuple(concepts["name"]),
            prompts=tuple(concepts["prompt"]),
            text=embedding_matrix(concepts),
            classes=tuple(classes["name"]),
            class_texts=tuple(classes["text"]),
            class_text=embedding_matrix(classes) if len(classes) else np.zeros((0, concepts[EMBEDDING].iloc[0].size)),
            logit_scale=float(table["logit_scale"].iloc[0]),
        )

    def class_index(self, name: str) -> int:
        if name not in self.classes:
            raise ValueError(f"class {name!r} has no class prompt in the vocabulary; its classes (the classifier's "
                             f"label names) are {list(self.classes)[:20]}")
        return self.classes.index(name)

    def class_names(self, synonyms: Mapping[str, Sequence[str]] | None = None) -> list[str]:
        """Every text that names a class: the class texts plus `synonyms` (class name -> words)."""
        return [*self.class_texts, *(word for words in (synonyms or {}).values() for word in words)]


def vocabulary_table(clip: ClipModel, concepts: Sequence[Concept], classes: Sequence[str], class_texts: Sequence[str],
                     class_template: str, model: str) -> pd.DataFrame:
    """Embed every concept prompt and one prompt per class (template "a {}" and text "square" -> "a square");
    rows of kind "concept" or "class" with name, text, prompt, logit_scale and embedding."""
    if "{}" not in class_template:
        raise ValueError(f"class prompt template {class_template!r}: must contain '{{}}' for the class name")
    if len(classes) != len(class_texts):
        raise ValueError(f"got {len(class_texts)} class texts for {len(classes)} classes")
    table = pd.DataFrame(
        {"kind": ["concept"] * len(concepts) + ["class"] * len(classes),
         "name": [c.name for c in concepts] + list(classes),
         "text": [c.name for c in concepts] + list(class_texts),
         "prompt": [c.prompt for c in concepts] + [class_template.format(t) for t in class_texts]}
    )
    table["logit_scale"] = logit_scale(clip)
    return with_embeddings(table, embed_texts(clip, table["prompt"].tolist()), model)
