"""Helpers shared by the world's training loops: devices, seeds, tensors and batches."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present, so the same rule trains on a GPU node or a laptop."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device: 'cuda' was asked for but no CUDA device is visible; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG a training loop touches and return a generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1], the library's image convention."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches covering 0..n-1 once."""
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


@dataclass
class Stopwatch:
    """Wall time of a training run, reported in every metrics file."""

    start: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def fit(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: dict,
    device: torch.device,
    desc: str,
) -> list[float]:
    """Supervised training with AdamW and a one-cycle schedule; returns the per-step losses.

    `batch_loss(outputs, index)` receives the model outputs and the batch's row indices, so one loop
    serves a single-label classifier and the multi-head oracle alike.
    """
    generator = seed_everything(cfg["seed"])
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["learning_rate"], weight_decay=0.05)
    steps_per_epoch = -(-len(inputs) // cfg["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg["learning_rate"], total_steps=cfg["epochs"] * steps_per_epoch
    )
    losses: list[float] = []
    for epoch in range(cfg["epochs"]):
        batches = tqdm(list(epoch_batches(len(inputs), cfg["batch_size"], generator)), desc=f"{desc} epoch {epoch + 1}", mininterval=5)
        for index in batches:
            loss = batch_loss(model(inputs[index].to(device)), index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """Model outputs for every input, batched, in eval mode, on the CPU."""
    model.to(device).eval()
    return torch.cat([model(batch.to(device)).cpu() for batch in inputs.split(batch_size)])


def warmup_cosine(step: int, total: int, peak: float, warmup: int = 100) -> float:
    """Learning rate: linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
