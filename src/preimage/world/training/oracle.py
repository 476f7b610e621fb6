"""Train the attribute oracle on the unbiased split (plus corrupted images for its `valid` head)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from preimage.utils.devices import predict, resolve_device
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec, make_split
from preimage.world.oracle import (
    REGRESSED,
    corrupt,
    decode,
    head_layout,
    normalised_regression_targets,
    output_size,
    split_heads,
)
from preimage.world.training.classifier import build_timm, normalise, save_timm
from preimage.world.training.common import Stopwatch, fit


def _targets(table: pd.DataFrame, shapes: tuple[str, ...], valid: np.ndarray) -> dict[str, torch.Tensor]:
    targets = {}
    for name, values in head_layout(shapes):
        if name == "valid":
            targets[name] = torch.tensor(valid.astype(np.int64))
        else:
            targets[name] = torch.tensor(table[name].map({v: i for i, v in enumerate(values)}).to_numpy(dtype=np.int64))
    targets["regression"] = torch.tensor(normalised_regression_targets(table))
    return targets


def _oracle_loss(outputs: torch.Tensor, targets: dict[str, torch.Tensor], shapes: tuple[str, ...]) -> torch.Tensor:
    """Cross-entropy per head and MSE for position/scale; attribute heads learn from valid images only."""
    heads = split_heads(outputs, shapes)
    valid = targets["valid"].bool()
    loss = F.cross_entropy(heads["valid"], targets["valid"])
    for name, _ in head_layout(shapes):
        if name != "valid":
            loss = loss + F.cross_entropy(heads[name][valid], targets[name][valid])
    return loss + F.mse_loss(heads["regression"][valid], targets["regression"][valid])


def train_oracle(spec: WorldSpec, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Train on clean unbiased images and as many corrupted ones; save; return per-head test metrics."""
    device = resolve_device(device_name)
    clock = Stopwatch()
    table, images = make_split(spec, "prior_train")
    rng = np.random.default_rng(cfg["seed"])
    invalid = corrupt(images[: len(images) // 2], rng)
    all_images = np.concatenate([images, invalid])
    all_table = pd.concat([table, table.iloc[: len(invalid)]], ignore_index=True)
    valid = np.r_[np.ones(len(images), bool), np.zeros(len(invalid), bool)]
    targets = _targets(all_table, spec.shapes, valid)
    model = build_timm(cfg, num_classes=output_size(spec.shapes))
    inputs = normalise(model, to_tensor(all_images))

    def batch_loss(outputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return _oracle_loss(outputs, {k: v[index].to(outputs.device) for k, v in targets.items()}, spec.shapes)

    losses = fit(model, inputs, batch_loss, cfg, device, "train oracle")
    seconds = clock.seconds()
    metrics = oracle_metrics(model, spec, device, rng)
    save_timm(model, cfg, out_dir, spec.image_size, {"oracle_heads": [[n, list(v)] for n, v in head_layout(spec.shapes)],
                                                      "oracle_regressed": list(REGRESSED)})
    return {"final_loss": float(np.mean(losses[-20:])), "seconds": seconds, "device": str(device),
            "parameters": sum(p.numel() for p in model.parameters()), **metrics}


def oracle_metrics(model: torch.nn.Module, spec: WorldSpec, device: torch.device, rng: np.random.Generator) -> dict:
    """Per-attribute accuracy (MAE for position/scale) on the unbiased test split, and validity rates."""
    table, images = make_split(spec, "unbiased_test")
    clean = decode(predict(model, normalise(model, to_tensor(images)), device), spec.shapes)
    broken = decode(predict(model, normalise(model, to_tensor(corrupt(images, rng))), device), spec.shapes)
    metrics = {f"{name}_accuracy": float((clean[name] == table[name]).mean()) for name, _ in head_layout(spec.shapes) if name != "valid"}
    metrics |= {f"{name}_mae": float((clean[name] - table[name]).abs().mean()) for name in REGRESSED}
    metrics["valid_rate_on_clean"] = float((clean["valid"] == "valid").mean())
    metrics["valid_rate_on_corrupted"] = float((broken["valid"] == "valid").mean())
    return metrics
