"""Train the world's regressor (a timm network with one output) on the regression task's biased split, and
measure how much it relies on the planted regression shortcut.

The regressor predicts the task's target (e.g. the shape's `scale`) in normalised units, 0 at the low end of
the attribute's range and 1 at the high end; its saved config records the target and range under
`regression`, so a tolerance such as 0.05 means 5 % of the range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from preimage.utils.devices import predict, resolve_device
from preimage.utils.images import to_tensor
from preimage.world.generator import REGRESSION_SPLITS, RegressionSpec, WorldSpec, make_split
from preimage.world.training.classifier import build_timm, normalise, save_timm
from preimage.world.training.common import Stopwatch, fit

TOLERANCE = 0.05  # normalised units: the share of images predicted this close is the regressor's "accuracy"


def regression_config(regression: RegressionSpec) -> dict:
    """What the saved config.json records of the task: the target, its range, and the output's units."""
    low, high = regression.low_high
    return {"target": regression.target, "low": low, "high": high,
            "units": "normalised: (target - low) / (high - low)"}


def train_regressor(spec: WorldSpec, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Train on `regressor_train` with the mean squared error, save the model, and return its metrics on the
    test and broken splits."""
    if spec.regression is None:
        raise ValueError("world.regression: not given; training the regressor needs the world's regression task")
    device = resolve_device(device_name)
    clock = Stopwatch()
    table, images = make_split(spec, REGRESSION_SPLITS["train"])
    model = build_timm(cfg, num_classes=1)
    inputs = normalise(model, to_tensor(images))
    targets = torch.tensor(spec.regression.normalise(table[spec.regression.target].to_numpy()), dtype=torch.float32)
    losses = fit(model, inputs, lambda out, i: F.mse_loss(out[:, 0], targets[i].to(out.device)), cfg, device,
                 "train regressor")
    seconds = clock.seconds()
    metrics = regression_metrics(model, spec, device)
    save_timm(model, cfg, out_dir, spec.image_size, {"regression": regression_config(spec.regression)})
    return {"final_loss": float(np.mean(losses[-20:])), "seconds": seconds, "device": str(device),
            "parameters": sum(p.numel() for p in model.parameters()), **metrics}


def _split_errors(model: torch.nn.Module, spec: WorldSpec, split: str, device: torch.device
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signed errors and targets in normalised units, whether each image shows the shortcut's value) on a split."""
    regression = spec.regression
    table, images = make_split(spec, split)
    predicted = predict(model, normalise(model, to_tensor(images)), device)[:, 0].numpy()
    targets = regression.normalise(table[regression.target].to_numpy())
    return predicted - targets, targets, (table[regression.attribute] == regression.value).to_numpy()


def _error_summary(errors: np.ndarray, targets: np.ndarray) -> dict:
    """Mean absolute and root mean squared error, R^2, and the share within TOLERANCE."""
    return {"mae": float(np.abs(errors).mean()), "rmse": float(np.sqrt(np.square(errors).mean())),
            "r2": float(1 - np.square(errors).mean() / targets.var()),
            "within_tolerance": float((np.abs(errors) <= TOLERANCE).mean())}


def regression_metrics(model: torch.nn.Module, spec: WorldSpec, device: torch.device) -> dict:
    """Errors in distribution (`regressor_test`) and on the broken split (`regressor_broken`, the shortcut's
    correlation reversed), in normalised units; `within_tolerance` is the share within 0.05 (the regressor's
    accuracy at that tolerance), `drop_points` how much of it the broken split loses. The shortcut's
    `bias` is the mean signed error of images showing its value minus that of the others on the broken split:
    how far the value alone moves the output up."""
    test, test_targets, _ = _split_errors(model, spec, REGRESSION_SPLITS["test"], device)
    broken, broken_targets, shows = _split_errors(model, spec, REGRESSION_SPLITS["broken"], device)
    iid, reversed_ = _error_summary(test, test_targets), _error_summary(broken, broken_targets)
    regression = spec.regression
    return {
        "tolerance": TOLERANCE,
        "iid": iid,
        "broken": reversed_,
        "drop_points": round(100 * (iid["within_tolerance"] - reversed_["within_tolerance"]), 2),
        "mae_increase": reversed_["mae"] - iid["mae"],
        "shortcut": {"target": regression.target, "attribute": regression.attribute, "value": regression.value,
                     "strength": regression.strength, "bias": float(broken[shows].mean() - broken[~shows].mean())},
    }
