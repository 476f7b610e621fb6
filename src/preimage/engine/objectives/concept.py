"""An objective in a CLIP model's space: a concept added to an image, or removed from it.

The measured value is the cosine similarity between the image's CLIP embedding and a concept's text embedding.
Unlike the tolerance objectives, the target is one-sided: adding a concept asks for a similarity at or above
the target, removing it for one at or below. The loss keeps the package's convention (accept <=> loss <= 1):

    loss = (relu(sign * (target - s) + margin) / margin) ** 2,   sign = +1 to add, -1 to remove

which is 1 at the target, grows past it on the wrong side and is 0 once the similarity is `margin` beyond it, so
a guided sampler stops pushing an image that clearly shows (or lacks) the concept. Concept interventions
(`preimage.analysis.concepts.interventions`) edit images with it; targets per image come from `bind` with a
relative target or from an explicit (B,) tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from preimage.engine.objectives.base import Leaf, check_positive
from preimage.engine.objectives.shared import Read, model_output
from preimage.engine.objectives.targets import TargetSpec

DIRECTIONS = {"add": 1.0, "remove": -1.0}


@dataclass(frozen=True, eq=False, repr=False)
class Concept(Leaf):
    """CLIP similarity to a concept's text embedding, pushed to at least (add) or at most (remove) the target."""

    encoder: Callable[[Tensor], Tensor]
    text: Tensor
    direction: str = "add"
    margin: float = 0.05
    concept_name: str = ""

    kind: ClassVar[str] = "concept"

    def with_model(self, model: Callable[[Tensor], Tensor]) -> Concept:
        return self._evolve(encoder=model)

    def _reads(self) -> tuple[Read, ...]:
        return (Read(self.encoder),)

    def __post_init__(self) -> None:
        if not callable(self.encoder):
            raise TypeError(f"concept: encoder must map images to (B, D) embeddings, got {type(self.encoder).__name__}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"concept: direction must be one of {sorted(DIRECTIONS)}, got {self.direction!r}")
        if not isinstance(self.text, Tensor) or self.text.dim() != 1:
            shape = tuple(self.text.shape) if isinstance(self.text, Tensor) else type(self.text).__name__
            raise ValueError(f"concept: text must be one (D,) text embedding, got {shape}")
        check_positive(self.margin, "concept margin")
        object.__setattr__(self, "text", torch.nn.functional.normalize(self.text.detach().float(), dim=0))
        super().__post_init__()

    @property
    def name(self) -> str:
        return f"concept:{self.concept_name}" if self.concept_name else self.kind

    def _measure(self, images: Tensor) -> Tensor:
        embeddings = model_output(self.encoder, images)
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2 or embeddings.shape[1] != len(self.text):
            shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__
            raise ValueError(f"concept: the encoder must return (B, {len(self.text)}) embeddings, got {shape}")
        embeddings = torch.nn.functional.normalize(embeddings.float(), dim=1)
        return embeddings @ self.text.to(embeddings.device)

    def _shortfall(self, images: Tensor) -> Tensor:
        """(B,) how far each similarity stays short of the target, in margins (<= 0: accepted)."""
        measured = self._checked_measure(images)
        sign = DIRECTIONS[self.direction]
        return sign * (self._target_for(measured) - measured) / self.margin

    def loss(self, images: Tensor) -> Tensor:
        return torch.relu(self._shortfall(images) + 1).square()

    def accept(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            return self._shortfall(images) <= 0

    def _parameters(self) -> dict:
        return {"concept": self.concept_name, "direction": self.direction, "margin": self.margin}


def concept(encoder: Callable[[Tensor], Tensor], text: Tensor, target: TargetSpec = None, *,
            direction: str = "add", margin: float = 0.05, name: str = "") -> Concept:
    """Add (or remove) the concept whose CLIP text embedding is `text`: similarity at least (at most) `target`.
    `encoder` maps [0, 1] images to CLIP image embeddings, e.g. `ClipModel.encode_images`."""
    return Concept(encoder=encoder, text=text, direction=direction, margin=margin, concept_name=name, target=target)
