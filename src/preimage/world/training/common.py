"""Helpers shared by the world's training loops: batches, the fit loop, learning-rate schedule, timing."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from preimage.utils.devices import seed_everything


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
    perturb: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> list[float]:
    """Supervised training with AdamW and a one-cycle schedule; returns the per-step losses.

    `batch_loss(outputs, index)` receives the model outputs and the batch's row indices, so one loop
    serves a single-label classifier and the multi-head oracle alike. `perturb(batch, index)`, where given,
    replaces each batch (on the device) before the forward pass: adversarial training's attack.
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
            batch = inputs[index].to(device)
            if perturb is not None:
                batch = perturb(batch, index)
            loss = batch_loss(model(batch), index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
    return losses




def warmup_cosine(step: int, total: int, peak: float, warmup: int = 100) -> float:
    """Learning rate: linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
