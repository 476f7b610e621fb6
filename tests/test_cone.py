"""DVCE's cone projection: the projection itself, objectives read from a robust twin, the guided sampler's cone
on a tiny prior, and the sampler spec's `cone_angle`."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_priors import PIXEL_SIZE, prior_with
from torch import nn

from preimage.engine.objectives import label, lowpass, neuron
from preimage.engine.samplers import Cone, GuidedSampler, cone_projection
from preimage.engine.samplers.spec import check_config, from_config, uses_cone

torch.set_num_threads(1)


def angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) angle in degrees between the flattened members of a and b."""
    cosine = nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)
    return torch.rad2deg(torch.acos(cosine.clamp(-1, 1)))


def test_a_gradient_inside_the_cone_is_kept() -> None:
    axis = torch.tensor([[1.0, 0.0, 0.0]])
    gradient = torch.tensor([[2.0, math.tan(math.radians(20)) * 2.0, 0.0]])  # 20 degrees off the axis
    torch.testing.assert_close(cone_projection(gradient, axis, 30.0), gradient)


@pytest.mark.parametrize("theta", [45.0, 80.0, 110.0])
def test_a_gradient_outside_lands_on_the_cone_edge_in_its_plane_as_the_closest_point(theta) -> None:
    torch.manual_seed(0)
    axis, other = torch.randn(2, 1, 50)
    other = other - (other * axis).sum() / axis.norm() ** 2 * axis  # orthogonal to the axis
    rad = math.radians(theta)
    gradient = 3.0 * (math.cos(rad) * axis / axis.norm() + math.sin(rad) * other / other.norm())
    projected = cone_projection(gradient, axis, 30.0)
    assert float(angle_between(projected, axis)) == pytest.approx(30.0, abs=1e-3)
    basis = torch.cat([axis, other]).T  # the plane of gradient and axis
    in_plane = basis @ torch.linalg.lstsq(basis, projected.T).solution
    torch.testing.assert_close(in_plane.T, projected, atol=1e-5, rtol=1e-5)
    assert float(projected.norm()) == pytest.approx(3.0 * math.cos(rad - math.radians(30)), rel=1e-4)
    # the closest point of the cone: nearer to the gradient than any other vector on the edge
    for scale in (0.5, 0.9, 1.1, 2.0):
        assert (gradient - projected).norm() < (gradient - scale * projected).norm()


def test_a_gradient_beyond_ninety_degrees_past_the_edge_projects_to_zero() -> None:
    axis = torch.tensor([[1.0, 0.0]])
    gradient = torch.tensor([[-1.0, 0.1]])  # about 174 degrees from the axis
    assert torch.equal(cone_projection(gradient, axis, 30.0), torch.zeros_like(gradient))
    # a half-space (90 degrees) keeps the part orthogonal to the axis
    torch.testing.assert_close(cone_projection(gradient, axis, 90.0), torch.tensor([[0.0, 0.1]]))


def test_zero_gradients_and_zero_axes_keep_the_gradient_per_member() -> None:
    gradient = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    axis = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    projected = cone_projection(gradient.view(3, 1, 2), axis.view(3, 1, 2), 30.0).view(3, 2)
    torch.testing.assert_close(projected[:2], gradient[:2])  # zero gradient stays zero; no axis, no cone
    assert float(angle_between(projected[2:], axis[2:])) == pytest.approx(30.0, abs=1e-4)


@pytest.mark.parametrize("angle", [0, -5, 91, "30", True])
def test_cone_angles_outside_zero_to_ninety_degrees_are_refused(angle) -> None:
    with pytest.raises(ValueError, match="cone angle"):
        Cone(nn.Identity(), angle)
    with pytest.raises(ValueError, match="cone_angle must be"):
        check_config({"kind": "guided", "cone_angle": angle})


class Linear(nn.Module):
    """A linear two-class classifier on pixels; `sign` -1 negates its logits (its label gradient flips)."""

    def __init__(self, seed: int, sign: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layer = nn.Linear(3 * PIXEL_SIZE * PIXEL_SIZE, 2)
        self.sign = sign

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.sign * self.layer(images.flatten(1))


def test_objectives_read_from_a_twin_keep_their_bound_target() -> None:
    explained, robust = Linear(0), Linear(1)
    source = torch.rand(1, 3, PIXEL_SIZE, PIXEL_SIZE, generator=torch.Generator().manual_seed(0))
    bound = (label(explained) + lowpass(4)).bind(source)
    twin = bound.with_model(robust)
    assert twin.terms[0][1].model is robust and twin.terms[1][1] is bound.terms[1][1]
    assert torch.equal(twin.terms[0][1].bound_target, bound.terms[0][1].bound_target)
    images = torch.rand(4, 3, PIXEL_SIZE, PIXEL_SIZE)
    torch.testing.assert_close(twin.terms[0][1].loss(images), label(robust, target=bound.terms[0][1].bound_target)
                               .loss(images))
    with pytest.raises(ValueError, match="neuron:layer:0: cannot be read from another model"):
        neuron(explained, "layer", unit=0).with_model(robust)


@pytest.fixture(scope="module")
def prior():
    return prior_with("v_prediction")


def guided(**settings) -> GuidedSampler:
    return GuidedSampler(**({"num_steps": 4, "guidance_scale": 0.5, "guidance_interval": (0.0, 1.0), "restarts": 0,
                             "gradient_dtype": "float32", "batch_size": 3} | settings))


def draw(sampler: GuidedSampler, prior, objective) -> torch.Tensor:
    source = torch.rand(1, 3, PIXEL_SIZE, PIXEL_SIZE, generator=torch.Generator().manual_seed(1))
    return sampler.sample(prior, objective, source, 3, torch.Generator().manual_seed(0)).images


@pytest.mark.parametrize("through_denoiser", [False, True])
def test_a_cone_around_the_explained_models_own_gradient_changes_nothing(prior, through_denoiser) -> None:
    explained = Linear(0)
    objective = label(explained, target=1, margin=100.0)  # a wide margin: the hinge stays active
    plain = draw(guided(through_denoiser=through_denoiser), prior, objective)
    coned = draw(guided(through_denoiser=through_denoiser, cone=Cone(explained, 30.0)), prior, objective)
    torch.testing.assert_close(coned, plain)
    assert not torch.allclose(plain, draw(guided(guidance_scale=0.0), prior, objective))


def test_a_robust_gradient_opposite_the_explained_one_cancels_the_guidance(prior) -> None:
    explained, opposite = Linear(0), Linear(0, sign=-1.0)  # the twin's label gradient is exactly -g
    objective = label(explained, target=1, margin=100.0)
    coned = draw(guided(cone=Cone(opposite, 60.0)), prior, objective)
    torch.testing.assert_close(coned, draw(guided(guidance_scale=0.0), prior, objective))
    # with a distance term only the distance still steers
    with_distance = draw(guided(cone=Cone(opposite, 60.0), distance_weight=1.0), prior, objective)
    distance_only = draw(guided(distance_weight=1.0), prior, label(Constant(), target=1))
    torch.testing.assert_close(with_distance, distance_only)


class Constant(nn.Module):
    """Logits that do not depend on the image: a label objective with no gradient."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 10.0]]).expand(images.shape[0], 2) + 0 * images.flatten(1)[:, :1]


def test_the_sampler_describes_its_cone_and_refuses_other_objects() -> None:
    sampler = guided(cone=Cone(Linear(0), 45))
    assert sampler.describe()["cone"] == {"angle": 45.0, "model": "Linear"}
    json.dumps(sampler.describe())
    assert GuidedSampler().describe()["cone"] is None
    with pytest.raises(ValueError, match="cone must be"):
        GuidedSampler(cone=30)


def test_the_spec_builds_a_cone_from_the_robust_model_it_is_given() -> None:
    robust = Linear(1)
    spec = {"kind": "guided", "cone_angle": 30}
    assert uses_cone(spec) and not uses_cone({"kind": "guided", "cone_angle": None})
    sampler = from_config(spec, robust=robust)
    assert sampler.cone.model is robust and sampler.cone.angle == 30.0
    assert from_config({"kind": "guided", "cone_angle": None}).cone is None
    with pytest.raises(ValueError, match=r"^sets.samplers.dvce: cone_angle needs the adversarially robust"):
        from_config(spec, where="sets.samplers.dvce")
    with pytest.raises(ValueError, match="field 'cone_angle' is not allowed for kind 'rejection'"):
        check_config({"kind": "rejection", "cone_angle": 30})


class Conv(nn.Module):
    """A conv layer and a two-class head: layers for the layer objectives."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(images).mean((2, 3)))


def test_the_kinds_the_config_check_lets_a_cone_read_are_those_with_a_robust_twin() -> None:
    """objectives.spec.TWIN_KINDS (the torch-free check of a config with a cone) matches `with_model`."""
    from preimage.engine.objectives import from_config as objective_from_config
    from preimage.engine.objectives import function
    from preimage.engine.objectives.spec import KINDS, TWIN_KINDS

    specs = {"label": {}, "probs": {}, "logits": {}, "regression": {"tolerance": 1.0},
             "neuron": {"layer": "conv", "unit": 0}, "channel": {"layer": "conv", "channel": 0},
             "features": {"layer": "conv"}, "lowpass": {"factor": 2},
             "masked": {"box": [0, 0, 2, 2], "image_size": PIXEL_SIZE}}
    assert set(specs) | {"function", "sum"} == set(KINDS)
    explained, robust = Conv(), Conv()
    for kind, fields in specs.items():
        objective = objective_from_config({"kind": kind, **fields}, explained)
        if kind in TWIN_KINDS:
            objective.with_model(robust)
        else:
            with pytest.raises(ValueError, match="cannot be read from another model"):
                objective.with_model(robust)
    with pytest.raises(ValueError, match="cannot be read from another model"):
        function(explained, tolerance=1.0).with_model(robust)
