"""Objective API: values, losses, acceptance, binding, counterfactual targets, composition, hooks, specs."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from torch import nn

from preimage.engine.objectives import (
    Channel,
    Features,
    Label,
    Lowpass,
    Masked,
    Neuron,
    Objective,
    RelativeTarget,
    Sum,
    box_mask,
    channel,
    features,
    from_config,
    function,
    label,
    logits,
    lowpass,
    masked,
    neuron,
    probs,
    regression,
    scale,
    shift,
)

torch.set_num_threads(1)
SIZE = 32


class UnitInterval(nn.Module):
    """A timm classifier that takes [0, 1] images and normalises internally, as the library's classifiers do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


class ColourNet(nn.Module):
    """Known semantics: 'features' is the image itself, 'pool' the mean colour, logits 10 * (r, g, b) and a
    constant 4 for class 3 (so red -> 0, green -> 1, blue -> 2, dull grey -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, 1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(3, 4)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.features.bias.zero_()
            self.head.weight.copy_(torch.cat([10 * torch.eye(3), torch.zeros(1, 3)]))
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 4.0]))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(images)))


class Brightness(nn.Module):
    """A regressor: mean brightness, as (B, 1)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3)).unsqueeze(1)


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def solid(r: float, g: float, b: float, n: int = 1) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.float32).view(1, 3, 1, 1).expand(n, 3, SIZE, SIZE).clone()


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model = UnitInterval(timm.create_model("resnet10t", num_classes=4, pretrained=False)).eval()
    return model.requires_grad_(False)


@pytest.fixture(scope="module")
def toy() -> nn.Module:
    return ColourNet().eval().requires_grad_(False)


def noise(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


RED, GREEN, BLUE, GREY = solid(1, 0, 0), solid(0, 1, 0), solid(0, 0, 1), solid(0.3, 0.3, 0.3)


# --- output objectives -----------------------------------------------------------------------------------------

def test_label_value_accept_and_margin_loss(toy):
    keep = label(toy).bind(RED)
    assert keep.value(torch.cat([RED, GREEN, BLUE, GREY])).tolist() == [0, 1, 2, 3]
    assert keep.bound_target.tolist() == [0]
    assert keep.accept(torch.cat([RED, BLUE])).tolist() == [True, False]
    losses = keep.loss(torch.cat([RED, BLUE]))
    assert losses[0] == 0  # red wins by far more than the margin: nothing left to push
    assert losses[1] > 5


def test_label_counterfactual_target_survives_bind(toy):
    to_blue = label(toy, target=2).bind(RED)
    assert to_blue.bound_target.tolist() == [2]
    assert to_blue.accept(torch.cat([RED, BLUE])).tolist() == [False, True]
    with pytest.raises(ValueError, match="out of range for 4 classes"):
        label(toy, target=7).accept(RED)
    with pytest.raises(TypeError, match="relative target"):
        label(toy, target=scale(2.0))
    with pytest.raises(ValueError, match="class index"):
        label(toy, target=1.5)


def test_probs_kl_tolerance(toy):
    keep = probs(toy, tolerance=0.05).bind(GREY)
    value = keep.value(torch.cat([GREY, RED]))
    assert value.shape == (2, 4) and torch.allclose(value.sum(1), torch.ones(2))
    assert keep.accept(torch.cat([GREY, solid(0.31, 0.3, 0.3), RED])).tolist() == [True, True, False]
    assert keep.loss(GREY).abs().item() < 1e-6
    with pytest.raises(ValueError, match="probability vector"):
        probs(toy, target=[0.5, 0.6, 0.0, 0.0])
    with pytest.raises(TypeError, match="relative target"):
        probs(toy, target=scale(2.0))


def test_logits_relative_l2_and_scaled_target(toy):
    keep = logits(toy, tolerance=0.1).bind(GREY)  # logits (3, 3, 3, 4), norm ~ 6.6
    assert keep.accept(torch.cat([GREY, solid(0.33, 0.3, 0.3), solid(0.6, 0.3, 0.3)])).tolist() == [True, True, False]
    doubled = keep.with_target(scale(2.0)).bind(GREY)
    assert torch.allclose(doubled.bound_target, 2 * keep.bound_target)
    shifted = keep.with_target(shift(1.0)).bind(GREY)
    assert torch.allclose(shifted.bound_target, keep.bound_target + 1)


def test_regression_absolute_tolerance_and_output_shapes():
    keep = regression(Brightness(), tolerance=0.05).bind(solid(0.5, 0.5, 0.5))
    images = torch.cat([solid(0.5, 0.5, 0.5), solid(0.54, 0.54, 0.54), solid(0.6, 0.6, 0.6)])
    assert torch.allclose(keep.value(images), torch.tensor([0.5, 0.54, 0.6]))
    assert keep.accept(images).tolist() == [True, True, False]
    flat = regression(lambda x: x.mean(dim=(1, 2, 3)), target=0.5, tolerance=0.05)
    assert flat.accept(images).tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, 1\)"):
        regression(lambda x: x.mean(dim=(2, 3)), tolerance=0.1, target=0.0).accept(images)


# --- internal objectives -----------------------------------------------------------------------------------------

def test_neuron_centre_location_and_flat_layer(toy):
    image = GREY.clone()
    image[0, 0, SIZE // 2, SIZE // 2] = 0.8  # red at the centre pixel
    image[0, 1, 0, 0] = 0.6  # green at the corner
    assert neuron(toy, "features", 0).value(image).item() == pytest.approx(0.8)
    assert neuron(toy, "features", 1, location=(0, 0)).value(image).item() == pytest.approx(0.6)
    mean_red = image[:, 0].mean().item()
    assert neuron(toy, "pool", 0).value(image).item() == pytest.approx(mean_red)
    with pytest.raises(ValueError, match="location applies only"):
        neuron(toy, "pool", 0, location=(0, 0)).value(image)
    with pytest.raises(ValueError, match="out of range: layer 'features' has 3 units"):
        neuron(toy, "features", 3).value(image)


def test_neuron_relative_tolerance_and_counterfactual(toy):
    keep = neuron(toy, "features", 0, rel_tolerance=0.1).bind(solid(0.5, 0.5, 0.5))
    images = torch.cat([solid(0.5, 0.5, 0.5), solid(0.54, 0.5, 0.5), solid(0.6, 0.5, 0.5)])
    assert keep.accept(images).tolist() == [True, True, False]
    doubled = neuron(toy, "features", 0, target=scale(2.0)).bind(solid(0.4, 0.5, 0.5))
    assert doubled.bound_target.item() == pytest.approx(0.8)
    assert doubled.accept(torch.cat([solid(0.4, 0.5, 0.5), solid(0.8, 0.5, 0.5)])).tolist() == [False, True]


def test_neuron_zero_target_uses_layer_floor(toy):
    source = solid(0.0, 0.6, 0.6)  # red silent at the source; layer RMS is sqrt(2 * 0.36 / 3) ~ 0.49
    keep = neuron(toy, "features", 0, rel_tolerance=0.1).bind(source)
    assert keep.source_scale == pytest.approx((2 * 0.36 / 3) ** 0.5, rel=1e-4)
    assert keep.accept(torch.cat([source, solid(0.04, 0.6, 0.6), solid(0.2, 0.6, 0.6)])).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="tolerance around this target is 0"):
        neuron(toy, "features", 0, target=0.0).accept(source)
    explicit_floor = neuron(toy, "features", 0, target=0.0, min_scale=1.0)
    assert explicit_floor.accept(solid(0.09, 0.6, 0.6)).tolist() == [True]


def test_channel_spatial_mean(toy):
    image = GREY.clone()
    image[0, 2, :8] = 1.0  # a quarter of the blue channel bright
    value = channel(toy, "features", 2).value(image).item()
    assert value == pytest.approx(image[0, 2].mean().item())
    keep = channel(toy, "features", 2).bind(image)
    assert keep.accept(torch.cat([image, image.flip(2), GREY])).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="channel needs"):
        channel(toy, "pool", 0).value(image)


def test_features_l2_and_cosine(toy):
    source = noise(1, 0)
    l2 = features(toy, "features", tolerance=0.1).bind(source)
    cosine = features(toy, "features", tolerance=0.01, metric="cosine").bind(source)
    assert l2.value(source).shape == (1, 3 * SIZE * SIZE)
    dimmer = 0.5 * source  # same direction, half the norm
    assert l2.accept(torch.cat([source, dimmer])).tolist() == [True, False]
    assert cosine.accept(torch.cat([source, dimmer, noise(1, 1)])).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="metric must be one of"):
        features(toy, "features", metric="manhattan")


# --- image-space objectives ----------------------------------------------------------------------------------------

def test_lowpass_ignores_detail_within_blocks():
    source = noise(1, 0)
    keep = lowpass(2, tolerance=0.02).bind(source)
    assert keep.value(source).shape == (1, 3, SIZE // 2, SIZE // 2)
    checker = (torch.arange(SIZE).view(-1, 1) + torch.arange(SIZE).view(1, -1)) % 2 * 0.2 - 0.1
    detailed = source + checker  # changes every pixel, not one 2x2 block mean
    assert keep.accept(torch.cat([source, detailed, source + 0.1])).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="does not divide"):
        lowpass(3).bind(source)


def test_masked_keeps_only_the_masked_region():
    source = noise(1, 0)
    mask = box_mask(SIZE, [8, 8, 24, 24])
    keep = masked(mask, tolerance=0.01).bind(source)
    outside, inside = source.clone(), source.clone()
    outside[..., :8, :] = 0.0
    inside[..., 12:20, 12:20] = 0.0
    assert keep.accept(torch.cat([source, outside, inside])).tolist() == [True, True, False]
    assert torch.equal(keep.value(source), source * mask)
    with pytest.raises(ValueError, match="mask weights must lie in"):
        masked(mask * 2)
    with pytest.raises(ValueError, match="mask must be a tensor of shape"):
        masked(mask.expand(3, SIZE, SIZE))
    with pytest.raises(ValueError, match="does not match images"):
        masked(box_mask(16, [0, 0, 4, 4])).bind(source)
    with pytest.raises(ValueError, match="must satisfy"):
        box_mask(SIZE, [8, 8, 8, 24])


def test_function_scalar_and_vector_outputs():
    source = solid(0.2, 0.4, 0.6)
    colour = function(lambda x: x.mean(dim=(2, 3)), tolerance=0.05, name="colour").bind(source)
    assert colour.name == "function:colour"
    assert colour.value(source).shape == (1, 3)
    assert colour.accept(torch.cat([source, solid(0.22, 0.42, 0.6), solid(0.3, 0.4, 0.6)])).tolist() == [
        True, True, False]
    assert function(lambda x: x.mean(dim=(1, 2, 3)), target=0.4, tolerance=0.01).accept(source).tolist() == [True]
    with pytest.raises(ValueError, match="must return a"):
        function(lambda x: x, tolerance=0.1, target=0.0).accept(source)


# --- every kind: gradient, source acceptance, describe ------------------------------------------------------------

def every_kind(model: nn.Module) -> dict[str, Objective]:
    return {
        "label": label(model, target=2),
        "probs": probs(model),
        "logits": logits(model),
        "regression": regression(lambda x: model(x)[:, 0], tolerance=0.1),
        "neuron": neuron(model, "net.layer3", 5),
        "neuron_flat": neuron(model, "net.global_pool", 7),
        "channel": channel(model, "net.layer2.0.conv1", 3),
        "features": features(model, "net.layer3"),
        "features_cosine": features(model, "net.layer4", metric="cosine"),
        "lowpass": lowpass(4),
        "masked": masked(box_mask(SIZE, [4, 4, 20, 28])),
        "function": function(lambda x: x.std(dim=(2, 3)), tolerance=0.01, name="contrast"),
    }


KINDS = [
    "label", "probs", "logits", "regression", "neuron", "neuron_flat", "channel", "features", "features_cosine",
    "lowpass", "masked", "function"]


def test_parametrised_kinds_cover_every_kind(resnet):
    assert list(every_kind(resnet)) == KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_loss_gradient_reaches_the_image(resnet, kind):
    objective = every_kind(resnet)[kind].bind(noise(1, 0))
    images = noise(2, 1).requires_grad_()
    loss = objective.loss(images)
    assert loss.shape == (2,) and (loss >= 0).all()
    loss.sum().backward()
    assert torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "label"])
def test_source_is_accepted_with_zero_loss_after_bind(resnet, kind):
    source = noise(1, 0)
    objective = every_kind(resnet)[kind].bind(source)
    assert objective.accept(source).tolist() == [True]
    assert objective.loss(source).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_describe_is_json_and_repr_readable(resnet, kind):
    unbound = every_kind(resnet)[kind]
    bound = unbound.bind(noise(1, 0))
    for objective in (unbound, bound):
        description = objective.describe()
        json.dumps(description)
        assert description["kind"] == repr(objective).split("(")[0]
    assert bound.describe()["bound_target"] is not None
    assert unbound.describe()["target"] == ("source" if kind != "label" else 2)


def test_unbound_objective_asks_for_bind(toy):
    with pytest.raises(RuntimeError, match=r"call \.bind\(source\) first"):
        label(toy).accept(RED)


def test_batch_of_sources_binds_per_image(toy):
    keep = label(toy).bind(torch.cat([RED, BLUE]))
    assert keep.accept(torch.cat([RED, BLUE])).tolist() == [True, True]
    assert keep.accept(torch.cat([BLUE, RED])).tolist() == [False, False]
    with pytest.raises(ValueError, match="does not fit values"):
        keep.accept(torch.cat([RED, BLUE, RED]))


def test_bad_images_are_rejected(toy):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        label(toy, target=0).accept(torch.rand(3, SIZE, SIZE))
    with pytest.raises(TypeError, match="float"):
        label(toy, target=0).accept(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))


# --- composition ------------------------------------------------------------------------------------------------

def test_weighted_sum_loss_accept_value_and_bind(toy):
    colour = label(toy)
    coarse = lowpass(4, tolerance=0.05)
    combined = (colour + 2.0 * coarse).bind(RED)
    assert isinstance(combined, Sum) and [w for w, _ in combined.terms] == [1.0, 2.0]
    assert all(part.bound_target is not None for _, part in combined.terms)
    images = torch.cat([RED, solid(0.9, 0.05, 0.0), BLUE])
    parts = [part.loss(images) for _, part in combined.terms]
    assert torch.allclose(combined.loss(images), parts[0] + 2.0 * parts[1])
    per_part = [part.accept(images) for _, part in combined.terms]
    assert per_part[0].tolist() == [True, True, False] and per_part[1].tolist() == [True, False, False]
    assert combined.accept(images).tolist() == [True, False, False]
    value = combined.value(images)
    assert list(value) == ["label", "lowpass:4"] and value["label"].tolist() == [0, 0, 2]


def test_sum_arithmetic_flattens_scales_and_names(toy):
    a, b = label(toy), lowpass(4)
    nested = 3 * (a + 2 * b) + b
    assert [w for w, _ in nested.terms] == [3.0, 6.0, 1.0]
    assert list(nested.bind(RED).value(RED)) == ["label", "lowpass:4", "lowpass:4#2"]
    assert "3 * label(" in repr(nested)
    assert json.loads(json.dumps(nested.describe()))["parts"][1]["weight"] == 6.0


def test_subtraction_and_negative_weights_are_refused(toy):
    a, b = label(toy), lowpass(4)
    with pytest.raises(TypeError, match="cannot be subtracted"):
        a - b
    with pytest.raises(TypeError, match="cannot be subtracted"):
        -a
    with pytest.raises(ValueError, match="weight must be >= 0"):
        -1.0 * a
    with pytest.raises(TypeError):
        a * b


# --- hooks and layer names ------------------------------------------------------------------------------------------

def hook_count(model: nn.Module) -> int:
    return sum(len(module._forward_hooks) for module in model.modules())


def test_hooks_are_removed_after_calls_and_exceptions(resnet):
    objective = neuron(resnet, "net.layer3", 5)
    bound = objective.bind(noise(1, 0))
    bound.loss(noise(2, 1))
    bound.accept(noise(2, 1))
    bound.value(noise(2, 1))
    assert hook_count(resnet) == 0
    with pytest.raises(ValueError, match="out of range"):
        neuron(resnet, "net.layer3", 10_000).value(noise(1, 0))
    assert hook_count(resnet) == 0
    broken = nn.Sequential(nn.Conv2d(3, 4, 1), Boom(), nn.Conv2d(4, 4, 1))
    with pytest.raises(RuntimeError, match="boom"):
        channel(broken, "2", 0).value(noise(1, 0))
    assert hook_count(broken) == 0


class WithSpare(nn.Module):
    """A model holding a layer its forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Conv2d(3, 4, 1)
        self.unused = nn.Conv2d(4, 4, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.used(images)


def test_layer_not_called_is_an_error_and_leaves_no_hook():
    model = WithSpare()
    with pytest.raises(RuntimeError, match="was not called"):
        channel(model, "unused", 0).value(noise(1, 0))
    assert hook_count(model) == 0


def test_unknown_layer_lists_nearest_matches(resnet):
    with pytest.raises(ValueError) as error:
        neuron(resnet, "net.layer3.0.conv", 0)
    assert "nearest matches" in str(error.value)
    assert "net.layer3.0.conv1" in str(error.value) and "net.layer3.0.conv2" in str(error.value)
    with pytest.raises(ValueError, match="top-level modules: net"):
        features(resnet, "zzzzzz")


# --- from_config ---------------------------------------------------------------------------------------------------------

def test_from_config_builds_each_documented_form(toy):
    unit = from_config({"kind": "neuron", "layer": "features", "unit": 1, "rel_tolerance": 0.2}, toy)
    assert isinstance(unit, Neuron) and unit.rel_tolerance == 0.2 and unit.target is None
    assert from_config({"kind": "label", "target": "source"}, toy).target is None
    assert from_config({"kind": "label", "target": 2}, toy).bound_target.tolist() == [2]
    coarse = from_config({"kind": "lowpass", "factor": 4, "tolerance": 0.05}, toy)
    assert isinstance(coarse, Lowpass) and coarse.factor == 4
    doubled = from_config({"kind": "neuron", "layer": "pool", "unit": 0, "target_scale": 2.0}, toy)
    assert doubled.target == RelativeTarget(factor=2.0)
    assert doubled.bind(solid(0.3, 0, 0)).bound_target.item() == pytest.approx(0.6)
    assert isinstance(from_config({"kind": "channel", "layer": "features", "channel": 0}, toy), Channel)
    assert isinstance(from_config({"kind": "features", "layer": "pool", "metric": "cosine"}, toy), Features)
    region = from_config({"kind": "masked", "box": [0, 0, 16, 16], "image_size": SIZE, "tolerance": 0.1}, toy)
    assert isinstance(region, Masked) and region.mask.sum() == 256
    other = from_config({"kind": "label", "model": "oracle"}, toy, {"oracle": ColourNet()})
    assert isinstance(other, Label) and isinstance(other.model, ColourNet) and other.model is not toy
    fn = from_config({"kind": "function", "model": "bright", "tolerance": 0.1}, toy, {"bright": Brightness()})
    assert fn.name == "function:bright" and fn.bind(GREY).accept(GREY).tolist() == [True]
    total = from_config({"kind": "sum", "parts": [{"kind": "label", "weight": 2.0}, {"kind": "lowpass", "factor": 2}]},
                      toy)
    assert [w for w, _ in total.terms] == [2.0, 1.0]


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "nueron"}, r"unknown kind 'nueron'; allowed kinds: channel, features"),
    ({"layer": "features"}, "unknown kind None"),
    ({"kind": "neuron", "layer": "features", "unit": 0, "tolerence": 0.1}, r"field 'tolerence' is not allowed for "
                                                                         r"kind 'neuron'; allowed fields: .*rel_tol"),
    ({"kind": "neuron", "layer": "features"}, "needs field 'unit'"),
    ({"kind": "regression"}, "needs field 'tolerance'"),
    ({"kind": "label", "target": 1, "target_scale": 2.0}, "at most one of target"),
    ({"kind": "label", "model": "oracle"}, "unknown model 'oracle'; named models: none were given"),
    ({"kind": "neuron", "layer": "feature", "unit": 0}, "nearest matches: features"),
    ({"kind": "sum", "parts": [{"kind": "label", "weight": -1}]}, "weight must be a number >= 0"),
    ({"kind": "lowpass", "factor": 0}, "factor must be an integer >= 1"),
    ({"kind": "neuron", "layer": "features", "unit": -1}, "unit must be an integer >= 0"),
])
def test_from_config_errors_name_the_problem(toy, spec, message):
    with pytest.raises((ValueError, TypeError), match=message):
        from_config(spec, toy)


# --- one forward pass per model and batch, shared by the terms of a sum -------------------------------------------

class Counted(nn.Module):
    """Wraps a model and counts its forward calls (an early-stopped forward counts too)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(images)


def calls_of(model: Counted, run) -> int:
    before = model.calls
    run()
    return model.calls - before


def test_label_plus_neuron_runs_the_model_once_per_call():
    model = Counted(ColourNet().eval().requires_grad_(False))
    combined = label(model) + neuron(model, "net.pool", 0)
    assert calls_of(model, lambda: combined.bind(RED)) == 1
    bound = combined.bind(RED)
    images = torch.cat([RED, GREEN, solid(0.9, 0.05, 0.0)])
    assert calls_of(model, lambda: bound.loss(images)) == 1
    assert calls_of(model, lambda: bound.accept(images)) == 1
    assert calls_of(model, lambda: bound.value(images)) == 1
    assert hook_count(model) == 0


def test_each_model_runs_once_and_image_terms_run_none():
    first, second = Counted(ColourNet().eval().requires_grad_(False)), Counted(ColourNet().eval().requires_grad_(False))
    combined = (label(first) + channel(first, "net.features", 0) + probs(second) + neuron(second, "net.pool", 2)
                + lowpass(4)).bind(RED)
    images = torch.cat([RED, GREY])
    for call in (combined.loss, combined.accept, combined.value):
        before = (first.calls, second.calls)
        call(images)
        assert (first.calls - before[0], second.calls - before[1]) == (1, 1)
    assert hook_count(first) == hook_count(second) == 0


def test_a_model_read_once_still_runs_alone_and_stops_at_its_layer():
    model = Counted(ColourNet().eval().requires_grad_(False))
    heads = []
    model.net.head.register_forward_pre_hook(lambda *_: heads.append(1))
    combined = (neuron(model, "net.features", 1) + lowpass(4)).bind(GREY)
    assert calls_of(model, lambda: combined.loss(GREY)) == 1 and not heads
    layers_only = (neuron(model, "net.features", 1) + channel(model, "net.pool.0", 2)).bind(GREY)
    assert calls_of(model, lambda: layers_only.loss(GREY)) == 1 and not heads  # stops after its last layer


def shared_sum(model: nn.Module) -> Sum:
    return (label(model) + 0.5 * neuron(model, "net.net.layer3", 5) + channel(model, "net.net.layer2.0.conv1", 3)
            + features(model, "net.net.layer4", metric="cosine") + logits(model) + lowpass(4))


def test_shared_pass_gives_the_values_of_the_terms_run_alone(resnet):
    model = Counted(resnet)
    combined = shared_sum(model).bind(noise(1, 0))
    alone = [part.bind(noise(1, 0)) for _, part in shared_sum(model).terms]
    for (_, part), single in zip(combined.terms, alone):
        assert torch.equal(part.bound_target, single.bound_target)
    for seed in (1, 2):  # two batches in turn: nothing is kept from the first
        images = noise(3, seed)
        losses = [single.loss(images) for single in alone]
        assert torch.allclose(combined.loss(images), sum(w * loss for (w, _), loss in zip(combined.terms, losses)))
        values = combined.value(images)
        for key, single in zip(values, alone):
            assert torch.equal(values[key], single.value(images))
        assert torch.equal(combined.accept(images), torch.stack([single.accept(images) for single in alone]).all(0))
        assert calls_of(model, lambda batch=images: combined.loss(batch)) == 1
    assert hook_count(model) == 0


def test_gradient_of_shared_pass_is_the_sum_of_the_terms_gradients(resnet):
    model = Counted(resnet)
    combined = shared_sum(model).bind(noise(1, 0))
    images = noise(2, 3).requires_grad_()
    (together,) = torch.autograd.grad(combined.loss(images).sum(), images)
    separate = sum(weight * torch.autograd.grad(part.loss(images).sum(), images)[0]
                   for weight, part in combined.terms)
    assert together.abs().sum() > 0
    # one backward through the shared graph adds the terms in another order: float32 rounding only (~1e-6)
    assert torch.allclose(together, separate, rtol=1e-5, atol=1e-5)


class InPlaceAfter(nn.Module):
    """The hooked conv's output is overwritten in place later in the forward (as `out += identity` does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.conv(images)
        out += 1.0
        return self.head(self.act(out))


def test_shared_activation_is_read_before_later_in_place_operations():
    torch.manual_seed(0)
    model = Counted(InPlaceAfter().eval())
    unit = neuron(model, "net.conv", 0, target=0.0, min_scale=1.0)
    combined = label(model, target=0) + unit
    images = noise(2, 4) - 0.5
    assert torch.equal(combined.value(images)["neuron:net.conv:0"], unit.value(images))
    assert (unit.value(images) < 0).any()  # what a ReLU applied in place would have hidden
    x = images.clone().requires_grad_()
    (together,) = torch.autograd.grad(combined.loss(x).sum(), x)
    separate = sum(torch.autograd.grad(part.loss(x).sum(), x)[0] for _, part in combined.terms)
    assert torch.allclose(together, separate, atol=1e-6)


def test_shared_pass_errors_match_and_leave_no_hooks():
    model = Counted(WithSpare())
    with pytest.raises(RuntimeError, match="'net.unused' was not called"):
        (channel(model, "net.used", 0) + channel(model, "net.unused", 0)).value(noise(1, 0))
    assert hook_count(model) == 0
    broken = nn.Sequential(nn.Conv2d(3, 4, 1), Boom(), nn.Conv2d(4, 4, 1))
    with pytest.raises(RuntimeError, match="boom"):
        (channel(broken, "0", 0) + channel(broken, "2", 0)).value(noise(1, 0))
    assert hook_count(broken) == 0


def test_no_grad_acceptance_and_gradient_pass_each_run_their_own_forward(toy):
    model = Counted(toy)
    combined = (label(model) + neuron(model, "net.pool", 0)).bind(RED)
    images = torch.cat([RED, GREY]).requires_grad_()
    with torch.no_grad():
        assert calls_of(model, lambda: combined.accept(images)) == 1
    loss = combined.loss(images)
    assert loss.requires_grad
    loss.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
