"""The world's adversarially robust classifier: the PGD attack, adversarial training on a tiny split, and a model
that loads like the classifier."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from preimage.engine.models import load_classifier
from preimage.utils.images import to_tensor
from preimage.world.generator import WorldSpec, make_split
from preimage.world.training.classifier import build_timm
from preimage.world.training.robust import Normalised, check_attack, pgd_attack, train_robust

torch.set_num_threads(1)

TINY_TIMM = {"architecture": "resnet10t", "model_args": {"channels": [8, 16, 32, 64]}, "epochs": 1,
             "batch_size": 32, "learning_rate": 0.002, "seed": 0}
ATTACK = {"norm": "l2", "epsilon": 0.5, "steps": 2, "step_size": 0.4, "eval_steps": 2}


@pytest.fixture
def spec(tiny_world) -> WorldSpec:
    return WorldSpec.from_config(tiny_world)


@pytest.mark.parametrize("norm, epsilon", [("l2", 0.5), ("linf", 8 / 255)])
def test_pgd_stays_in_the_ball_and_in_pixel_range_and_raises_the_loss(spec, norm, epsilon) -> None:
    table, images = make_split(spec, "classifier_test")
    pixels, labels = to_tensor(images[:16]), torch.tensor(table["label"].to_numpy()[:16])
    model = Normalised(build_timm(TINY_TIMM, num_classes=len(spec.shapes))).eval()
    torch.manual_seed(0)
    adversaries = pgd_attack(model, pixels, labels, norm, epsilon, steps=5, step_size=2.5 * epsilon / 5)
    delta = (adversaries - pixels).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert (size <= epsilon + 1e-5).all() and (size > 0).any()
    assert adversaries.min() >= 0 and adversaries.max() <= 1
    with torch.no_grad():
        clean_loss = F.cross_entropy(model(pixels), labels)
        adversarial_loss = F.cross_entropy(model(adversaries), labels)
    assert adversarial_loss > clean_loss


def test_adversarial_training_saves_a_classifier_that_loads_like_the_explained_one(spec, tmp_path) -> None:
    metrics = train_robust(spec, TINY_TIMM | {"attack": ATTACK}, "cpu", tmp_path)
    assert 0 <= metrics["adversarial_accuracy"] <= 1 and 0 <= metrics["clean_accuracy"] <= 1
    assert metrics["clean_accuracy"] == metrics["iid_accuracy"]  # the same test split, measured twice
    assert metrics["attack"]["eval_step_size"] == pytest.approx(2.5 * 0.5 / 2)
    assert {s["class"] for s in metrics["shortcuts"]} == {s.cls for s in spec.shortcuts}
    json.dumps(metrics)
    loaded = load_classifier(str(tmp_path))
    assert loaded.label_names == list(spec.shapes)
    pixels = to_tensor(make_split(spec, "classifier_test")[1][:4])
    inner = build_timm(TINY_TIMM, num_classes=len(spec.shapes))
    inner.load_state_dict(loaded.state_dict())
    with torch.no_grad():  # the loader's preprocessing is the normalisation the attack trained through
        torch.testing.assert_close(loaded(pixels), Normalised(inner).eval()(pixels))


@pytest.mark.parametrize("change, message", [({"norm": "l1"}, "attack.norm"), ({"epsilon": 0}, "attack.epsilon"),
                                             ({"steps": 0}, "attack.steps")])
def test_bad_attack_settings_are_refused_naming_the_key(change, message) -> None:
    with pytest.raises(ValueError, match=f"training.robust.{message}"):
        check_attack(ATTACK | change)
