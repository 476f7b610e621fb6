"""Global counterfactual directions: DDIM inversion, the black-box search, its CLIP and oracle descriptions, the
pipeline step's checks and the report section, on tiny models."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from preimage.analysis.concepts.embeddings import EmbeddedVocabulary
from preimage.analysis.directions import concept_shift, zero_shot_classes
from preimage.analysis.report.directions import (
    DirectionSection,
    direction_grid_figure,
    directions_html,
    directions_markdown,
    flip_rate_figure,
)
from preimage.analysis.report.style import save_figure
from preimage.engine.directions import DirectionSettings, edit, find_direction, invert, probabilities, regenerate
from preimage.engine.priors.base import ddim_from_config
from preimage.pipeline.config import ConfigError, validate_config
from preimage.pipeline.steps.directions import check_target, split_images, summarise
from preimage.utils.io import write_json, write_parquet

torch.set_num_threads(1)

FAST = DirectionSettings(num_steps=5, level=0.6, magnitude=1.0, resolution=4, iterations=3, population=2)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


class _Forbidden(torch.autograd.Function):
    """Passes its input through; asking for its gradient fails the test."""

    @staticmethod
    def forward(ctx, logits):
        return logits.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("the search asked for the classifier's gradient")


class Brightness(torch.nn.Module):
    """A black-box toy classifier of two classes: "bright" (1) when an image's mean exceeds `threshold`. It counts
    its calls and records whether any came with autograd on or on an input that needs a gradient."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold, self.calls, self.graded = threshold, 0, False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += len(images)
        self.graded |= torch.is_grad_enabled() or images.requires_grad
        margin = 40 * (images.mean((1, 2, 3)) - self.threshold)
        return _Forbidden.apply(torch.stack([-margin, margin], 1)).softmax(1)


def _toy_images() -> torch.Tensor:
    """Dark and bright images: the classifier calls half of them the target."""
    images = _images(16) * 0.5
    images[8:] += 0.5
    return images


def test_a_round_trip_through_the_inverted_latent_converges_with_more_steps(tiny_pixel_models):
    _, prior = tiny_pixel_models
    images = _images(4)
    errors = []
    for steps in (5, 50):
        settings = DirectionSettings(num_steps=steps, level=0.6)
        latents = invert(prior, images, settings)
        assert latents.shape == (4, *prior.latent_shape)
        errors.append(float((regenerate(prior, latents, settings) - images).pow(2).mean().sqrt()))
    assert errors[1] < errors[0] / 4 and errors[1] < 0.02


def test_invert_step_undoes_a_deterministic_step_of_a_constant_noise_estimate(tiny_pixel_models):
    """Where the denoiser's noise estimate does not depend on z, reading it at z_s instead of z_t costs nothing:
    the inversion step is the exact inverse of the DDIM step."""
    _, prior = tiny_pixel_models
    prior.scheduler = ddim_from_config({**prior.scheduler.config, "prediction_type": "epsilon", "clip_sample": False},
                                       "trailing")
    constant = _images(1, seed=1) - 0.5
    prior.predict = lambda z, t, condition=None: constant.expand_as(z)
    timesteps = prior.timesteps(10, 0.6)
    z_s = _images(2, seed=2)
    for t in timesteps.flip(0)[:3]:
        torch.testing.assert_close(prior.step(prior.invert_step(z_s, t), t), z_s, atol=1e-5, rtol=1e-5)


def test_the_search_never_asks_for_the_classifier_gradient_and_flips_a_toy_classifier(tiny_pixel_models):
    _, prior = tiny_pixel_models
    classifier = Brightness(threshold=0.5)
    images = _toy_images()
    direction = find_direction(prior, classifier, images, target=1, settings=FAST)
    assert not classifier.graded
    trace = direction.trace
    assert list(trace["iteration"]) == [0, 1, 2, 3] and trace["calls"].iloc[-1] == classifier.calls - len(images)
    assert direction.vector.shape == prior.latent_shape
    assert float(direction.vector.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)
    dark = _images(8, seed=3) * 0.5
    latents = invert(prior, dark, FAST)
    before = probabilities(classifier, regenerate(prior, latents, FAST)).argmax(1)
    after = probabilities(classifier, edit(prior, latents, direction.vector, FAST)).argmax(1)
    assert (before == 1).float().mean() <= 0.25 and (after == 1).float().mean() >= 0.75


def test_the_search_is_seeded(tiny_pixel_models):
    _, prior = tiny_pixel_models
    images = _toy_images()
    weak = DirectionSettings(**{**FAST.__dict__, "magnitude": 0.05})  # no image flips, so every update counts
    first, again = (find_direction(prior, Brightness(0.5), images, 1, weak) for _ in range(2))
    other = find_direction(prior, Brightness(0.5), images, 1, DirectionSettings(**{**weak.__dict__, "seed": 1}))
    torch.testing.assert_close(first.vector, again.vector, rtol=0, atol=0)
    pd.testing.assert_frame_equal(first.trace, again.trace)
    assert not first.trace["objective"].iloc[1:].equals(other.trace["objective"].iloc[1:])


def test_the_start_needs_images_of_both_calls(tiny_pixel_models):
    _, prior = tiny_pixel_models
    with pytest.raises(ValueError, match="calls 0 of 4 the target"):
        find_direction(prior, Brightness(2.0), _images(4), 1, FAST)


@pytest.mark.parametrize("field, value", [("level", 0.0), ("level", 1.5), ("magnitude", 0.0), ("iterations", -1),
                                          ("population", 0)])
def test_bad_search_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        DirectionSettings(**{field: value})


def test_concept_shift_ranks_the_concept_the_edit_adds_first():
    axes = np.eye(6, dtype=np.float32)
    vocabulary = EmbeddedVocabulary(("a tag", "a square", "a red shape"), ("a tag", "a square", "a red shape"),
                                    axes[:3], ("circle", "square"), ("circle", "square"), axes[3:5], 30.0)
    rng = np.random.default_rng(0)
    before = rng.normal(0, 0.1, (20, 6)).astype(np.float32)
    before[:, 3] += 1  # every image a circle
    after = before.copy()
    after[:, 0] += 0.8  # the edit adds a tag
    shift = concept_shift(before, after, vocabulary)
    assert shift.iloc[0]["concept"] == "a tag" and shift.iloc[0]["rank"] == 1 and shift.iloc[0]["rising"] == 1.0
    assert list(zero_shot_classes(before, vocabulary)) == ["circle"] * 20


def test_the_oracle_reads_an_added_tag():
    from preimage.pipeline.config import load_config
    from preimage.pipeline.models import model_dir
    from preimage.utils.images import to_tensor
    from preimage.world.directions import attribute_changes
    from preimage.world.oracle import load_oracle
    from preimage.world.render import render

    config = load_config("config.yaml")
    shapes = tuple(config["world"]["shapes"])
    rows = [{"shape": shape, "fg_colour": "red", "bg_colour": "white", "texture": "plain", "tag": "absent",
             "scale": 0.55, "x": 0.0, "y": 0.0, "rotation": 10.0} for shape in ("circle", "triangle", "cross")]
    before = to_tensor(np.stack([render(row, 32) for row in rows]))
    after = to_tensor(np.stack([render(row | {"tag": "present"}, 32) for row in rows]))
    changes = attribute_changes(load_oracle(model_dir(config, "oracle")), before, after, shapes).set_index("attribute")
    assert changes.index[0] == "tag"
    assert changes.loc["tag", "changed"] == 1.0 and changes.loc["tag", "value"] == "present"
    assert changes.loc["tag", "concept"] == "a tag" and changes.loc["shape", "changed"] == 0.0


def test_a_target_must_be_a_class_of_the_classifier():
    assert check_target("square", ["circle", "square"]) == 1
    with pytest.raises(ValueError, match=r"directions.targets: 'age' is not a class .*regression targets are not"):
        check_target("age", ["circle", "square"])
    with pytest.raises(ValueError, match="no class names"):
        check_target("square", None)


def test_training_and_held_out_images_are_disjoint_and_too_few_name_the_key():
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(30)], "class_name": ["circle", "square", "cross"] * 10})
    section = {"seed": 0, "train_per_class": 3, "heldout_per_class": 5, "split": "classifier_test"}
    train, heldout = split_images(table, "square", section)
    assert len(train) == 9 and len(heldout) == 10 and not set(train) & set(heldout)
    assert set(table["class_name"].iloc[heldout]) == {"circle", "cross"}
    np.testing.assert_array_equal(split_images(table, "square", section)[0], train)
    with pytest.raises(ValueError, match="directions.train_per_class"):
        split_images(table, "square", section | {"heldout_per_class": 8})


@pytest.mark.parametrize("change, message", [
    ({"targets": ["hexagon"]}, r"directions.targets\[0\]: 'hexagon' is not a class"),
    ({"targets": [{"regression": 0.3}]}, r"directions.targets\[0\]"),
    ({"split": "sources"}, "directions.split: `sources` means"),
    ({"level": 0}, "directions.level"),
    ({"train_per_class": 0}, "directions.train_per_class"),
    ({"tragets": ["square"]}, r"directions: unknown key\(s\) \['tragets'\]"),
])
def test_bad_direction_settings_are_refused_naming_the_key(config, change, message):
    bad = copy.deepcopy(config)
    bad["directions"].update(change)
    with pytest.raises(ConfigError, match=message):
        validate_config(bad)


def test_the_report_section_shows_each_direction_read_from_its_files(tmp_path):
    held = pd.DataFrame({"class_name": ["circle", "cross"], "call_edited": ["square", "cross"],
                         "call_reconstruction": ["circle", "cross"], "call_original": ["circle", "cross"],
                         "lpips_to_original": [0.1, 0.2], "lpips_to_reconstruction": [0.1, 0.1],
                         "clip_before": ["circle", "cross"], "clip_after": ["circle", "cross"]})
    summary = summarise(held, "square")
    assert summary.set_index("source_class")["flip_rate"].to_dict() == {"circle": 1.0, "cross": 0.0, "all": 0.5}
    concepts = pd.DataFrame({"rank": [1, 2], "concept": ["a tag", "a square"], "before": [0.2, 0.3],
                             "after": [0.5, 0.3], "change": [0.3, 0.0], "rising": [1.0, 0.5]})
    oracle = pd.DataFrame([{"attribute": "tag", "changed": 0.8, "value": "present", "before": 0.0, "after": 0.8,
                            "gain": 0.8, "concept": "a tag"}])
    search = {"target": "square", "train_images": 32, "classifier_calls": 100, "search_seconds": 12.0,
              "train_flip_rate": 0.6, "train_flip_rate_start": 0.5}
    folder = tmp_path / "square"
    for name, table in (("summary", summary), ("concepts", concepts), ("oracle", oracle)):
        write_parquet(table, folder / f"{name}.parquet")
    write_json(search, folder / "search.json")
    rng = np.random.default_rng(0)
    originals, edited = (rng.integers(0, 255, (2, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    save_figure(direction_grid_figure(originals, edited, held["class_name"].to_numpy(), "square"), tmp_path / "grid")
    save_figure(flip_rate_figure(summary), tmp_path / "flips")
    section = DirectionSection.read(folder, {name: tmp_path / f"{name}.png" for name in ("grid", "flips")}, True)
    assert section.target == "square" and section.oracle is not None
    assert all(path.stat().st_size > 1000 for path in section.figures.values())
    html = directions_html([section], lambda frame: frame.to_html(), lambda path: path)
    assert "towards square" in html and "a tag" in html and "Oracle attributes" in html
    markdown = "\n".join(directions_markdown([section], lambda path, text: text))
    assert "CLIP concepts that rise most: **a tag, a square**" in markdown and "**tag** changes most" in markdown
    assert directions_html([], str, str) == "" and directions_markdown([], str) == []
