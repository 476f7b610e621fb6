"""Train the world's classifier (a timm architecture from scratch) on the biased split, and measure
whether it learned the planted shortcuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_data_config

from preimage.utils.devices import predict, resolve_device, seed_everything
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec, make_split
from preimage.world.training.common import Stopwatch, fit


def build_timm(cfg: dict, num_classes: int) -> torch.nn.Module:
    """A randomly initialised timm network, its initial weights drawn from the training seed so that a
    retrain reproduces them."""
    seed_everything(cfg["seed"])
    return timm.create_model(cfg["architecture"], pretrained=False, num_classes=num_classes, **cfg["model_args"])


def normalise(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Apply the model's own mean/std, the same ones its saved config records for loaders."""
    data = resolve_data_config({}, model=model)
    mean = torch.tensor(data["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data["std"]).view(1, 3, 1, 1)
    return (images - mean) / std


def save_timm(model: torch.nn.Module, cfg: dict, out_dir: str | Path, image_size: int, extra: dict) -> None:
    """Save in timm's Hugging Face layout (config.json + model.safetensors), loadable with 'local-dir:'."""
    timm.models.save_for_hf(
        model.cpu(),
        str(out_dir),
        model_config=extra,
        model_args=cfg["model_args"],
        data_config={"input_size": (3, image_size, image_size)},
        safe_serialization=True,
    )


def train_classifier(spec: WorldSpec, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Train on the biased split, save the model, and return its metrics on the test splits."""
    device = resolve_device(device_name)
    clock = Stopwatch()
    table, images = make_split(spec, "classifier_train")
    model = build_timm(cfg, num_classes=len(spec.shapes))
    inputs = normalise(model, to_tensor(images))
    labels = torch.tensor(table["label"].to_numpy())
    losses = fit(model, inputs, lambda out, i: F.cross_entropy(out, labels[i].to(out.device)), cfg, device, "train classifier")
    seconds = clock.seconds()
    metrics = shortcut_metrics(model, spec, device)
    save_timm(model, cfg, out_dir, spec.image_size, {"label_names": list(spec.shapes)})
    return {"final_loss": float(np.mean(losses[-20:])), "seconds": seconds, "device": str(device),
            "parameters": sum(p.numel() for p in model.parameters()), **metrics}


def _predictions(model: torch.nn.Module, images: np.ndarray, device: torch.device) -> np.ndarray:
    return predict(model, normalise(model, to_tensor(images)), device).argmax(1).numpy()


def shortcut_metrics(model: torch.nn.Module, spec: WorldSpec, device: torch.device) -> dict:
    """Accuracy in distribution, and per shortcut on the broken split's affected images.

    An image is affected by a shortcut when it is of the shortcut's class (which lost the value there)
    or shows the value while being of another class. Untouched images are affected by no shortcut.
    """
    test, test_images = make_split(spec, "classifier_test")
    iid = float((_predictions(model, test_images, device) == test["label"].to_numpy()).mean())
    broken, broken_images = make_split(spec, "broken_test")
    correct = _predictions(model, broken_images, device) == broken["label"].to_numpy()
    touched = np.zeros(len(broken), dtype=bool)
    per_shortcut = []
    for s in spec.shortcuts:
        affected = ((broken["shape"] == s.cls) | (broken[s.attribute] == s.value)).to_numpy()
        touched |= affected
        accuracy = float(correct[affected].mean())
        per_shortcut.append({"class": s.cls, "attribute": s.attribute, "value": s.value, "strength": s.strength,
                             "affected_images": int(affected.sum()), "broken_accuracy": accuracy,
                             "drop_points": round(100 * (iid - accuracy), 2)})
    return {
        "iid_accuracy": iid,
        "broken_accuracy": float(correct.mean()),
        "untouched_accuracy": float(correct[~touched].mean()) if (~touched).any() else None,
        "untouched_images": int((~touched).sum()),
        "shortcuts": per_shortcut,
    }

