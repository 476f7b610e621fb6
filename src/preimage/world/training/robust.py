"""Train an adversarially robust twin of the world's classifier: PGD adversarial training (Madry et al. 2018).

Same architecture, data and optimiser as the classifier (the biased `classifier_train` split, so it learns the
same task from the same shortcut-laden images: the robust version of the explained classifier), but every batch
is first replaced by its PGD adversary within an L2 or Linf ball of radius `epsilon` in [0, 1] pixel units. A
robust classifier's input gradients are perceptually aligned (Santurkar et al. 2019), which is what DVCE's cone
projection (`preimage.engine.samplers.cone`) borrows: the guided sampler keeps the explained classifier's
gradient within a cone around this model's.

The attack runs on [0, 1] pixels, with the model's normalisation inside the differentiated function, so
`epsilon` means the same for any mean and std; the saved model normalises as the classifier does (timm's
config), and `load_classifier` reads it like the classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import resolve_data_config
from torch import Tensor, nn

from preimage.utils.devices import resolve_device
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec, make_split
from preimage.world.training.classifier import build_timm, save_timm, shortcut_metrics
from preimage.world.training.common import Stopwatch, fit

NORMS = ("l2", "linf")
EVAL_BATCH = 256


class Normalised(nn.Module):
    """The model applied to [0, 1] pixels: its own mean and std first, the ones `normalise` applies."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        data = resolve_data_config({}, model=model)
        self.register_buffer("mean", torch.tensor(data["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data["std"]).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.model((pixels - self.mean) / self.std)


def check_attack(attack: dict) -> dict:
    """The attack settings `{norm, epsilon, steps, step_size, eval_steps}`, checked."""
    if attack.get("norm") not in NORMS:
        raise ValueError(f"training.robust.attack.norm must be one of {list(NORMS)}, got {attack.get('norm')!r}")
    for key in ("epsilon", "step_size"):
        value = attack.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"training.robust.attack.{key} must be a number > 0, got {value!r}")
    for key in ("steps", "eval_steps"):
        value = attack.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"training.robust.attack.{key} must be an int >= 1, got {value!r}")
    return attack


def _per_image_norm(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *[1] * (x.dim() - 1))


def _project(delta: Tensor, norm: str, epsilon: float) -> Tensor:
    """`delta` moved into the ball of radius epsilon."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    return delta * (epsilon / _per_image_norm(delta)).clamp(max=1.0)


def _random_start(images: Tensor, norm: str, epsilon: float) -> Tensor:
    """A uniform draw in the Linf ball, or a random direction at a uniform radius in the L2 ball."""
    if norm == "linf":
        return (torch.rand_like(images) * 2 - 1) * epsilon
    direction = torch.randn_like(images)
    radius = torch.rand(images.shape[0], *[1] * (images.dim() - 1), device=images.device) * epsilon
    return direction / _per_image_norm(direction) * radius


def pgd_attack(model: nn.Module, images: Tensor, labels: Tensor, norm: str, epsilon: float, steps: int,
               step_size: float) -> Tensor:
    """Projected gradient ascent on the cross-entropy from a random start within `epsilon` (L2 or Linf) of
    `images` ([0, 1] pixels; `model` takes them as they are): steps of `step_size` along the gradient's sign
    (Linf) or its normalised direction (L2), projected back into the ball and onto [0, 1] after each."""
    images = images.detach()
    delta = _project(_random_start(images, norm, epsilon), norm, epsilon)
    delta = (images + delta).clamp(0, 1) - images
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(images + delta), labels)
        (gradient,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            step = gradient.sign() if norm == "linf" else gradient / _per_image_norm(gradient)
            delta = _project(delta + step_size * step, norm, epsilon)
            delta = (images + delta).clamp(0, 1) - images
    return (images + delta).detach()


def train_robust(spec: WorldSpec, cfg: dict, device_name: str, out_dir: str | Path) -> dict:
    """Adversarially train on the biased split, save the model, and return its clean and PGD accuracy on
    `classifier_test` with the classifier's shortcut metrics."""
    attack = check_attack(cfg["attack"])
    device = resolve_device(device_name)
    clock = Stopwatch()
    table, images = make_split(spec, "classifier_train")
    inner = build_timm(cfg, num_classes=len(spec.shapes))
    model = Normalised(inner)
    pixels = to_tensor(images)
    labels = torch.tensor(table["label"].to_numpy())

    def adversarial(batch: Tensor, index: Tensor) -> Tensor:
        model.eval()  # the attack does not move the batch-norm statistics
        adversaries = pgd_attack(model, batch, labels[index].to(batch.device), attack["norm"], attack["epsilon"],
                                 attack["steps"], attack["step_size"])
        model.train()
        return adversaries

    losses = fit(model, pixels, lambda out, i: F.cross_entropy(out, labels[i].to(out.device)), cfg, device,
                 "train robust classifier", perturb=adversarial)
    seconds = clock.seconds()
    metrics = {**robust_accuracy(model, spec, attack, device), **shortcut_metrics(inner, spec, device)}
    save_timm(inner, cfg, out_dir, spec.image_size, {"label_names": list(spec.shapes)})
    return {"final_loss": float(np.mean(losses[-20:])), "seconds": seconds, "device": str(device),
            "parameters": sum(p.numel() for p in inner.parameters()), **metrics}


def robust_accuracy(model: nn.Module, spec: WorldSpec, attack: dict, device: torch.device) -> dict:
    """Clean accuracy and accuracy under a PGD attack of `eval_steps` steps (step 2.5 epsilon / steps, Madry's
    rule) at the training epsilon on `classifier_test`; `model` takes [0, 1] pixels."""
    table, images = make_split(spec, "classifier_test")
    pixels, labels = to_tensor(images), torch.tensor(table["label"].to_numpy())
    steps = attack["eval_steps"]
    step_size = 2.5 * attack["epsilon"] / steps
    model.to(device).eval()
    clean = adversarial = 0
    for batch, truth in zip(pixels.split(EVAL_BATCH), labels.split(EVAL_BATCH)):
        batch, truth = batch.to(device), truth.to(device)
        with torch.no_grad():
            clean += int((model(batch).argmax(1) == truth).sum())
        adversaries = pgd_attack(model, batch, truth, attack["norm"], attack["epsilon"], steps, step_size)
        with torch.no_grad():
            adversarial += int((model(adversaries).argmax(1) == truth).sum())
    return {"clean_accuracy": clean / len(labels), "adversarial_accuracy": adversarial / len(labels),
            "attack": {**attack, "eval_step_size": step_size}}
