"""Concept interventions: the concept objective, edits of many sources at once, effects and findings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_SIZE
from test_concepts import tiny_clip  # noqa: F401  (a fixture)

from preimage.analysis.concepts.effects import EffectSettings, as_scores, concept_effects, findings, mean_interval
from preimage.analysis.concepts.interventions import (
    ClipSpace,
    InterventionSettings,
    intervene,
    concepts_to_test,
)
from preimage.engine.objectives import concept
from preimage.engine.samplers import GuidedSampler, NoiseOptSampler, RejectionSampler


def redness(images: torch.Tensor) -> torch.Tensor:
    """A 2-D stand-in for CLIP: (red, not red) mean colour, normalised by the objective."""
    red = images[:, 0].mean((1, 2))
    return torch.stack([red, images[:, 1:].mean((1, 2, 3))], dim=1)


RED = torch.tensor([1.0, 0.0])


def flat(colour: list[float], n: int = 1) -> torch.Tensor:
    return torch.tensor(colour).view(1, 3, 1, 1).expand(n, 3, TINY_SIZE, TINY_SIZE).clone()


# --- the concept objective ------------------------------------------------------------------------------------

def test_concept_accepts_past_its_target_and_has_loss_one_at_it():
    red, grey = flat([0.9, 0.1, 0.1]), flat([0.5, 0.5, 0.5])
    similarity = {name: float(concept(redness, RED).value(x)) for name, x in (("red", red), ("grey", grey))}
    at_target = concept(redness, RED, target=similarity["grey"], margin=0.05)
    assert at_target.loss(grey).item() == pytest.approx(1.0, abs=1e-5)
    add = concept(redness, RED, target=(similarity["red"] + similarity["grey"]) / 2, margin=0.01)
    assert add.accept(red).item() and not add.accept(grey).item()
    assert add.loss(red).item() == 0.0 and add.loss(grey).item() > 1.0
    remove = concept(redness, RED, target=(similarity["red"] + similarity["grey"]) / 2, direction="remove", margin=0.01)
    assert remove.accept(grey).item() and not remove.accept(red).item()


def test_concept_takes_a_target_per_image_and_names_its_errors():
    images = torch.cat([flat([0.9, 0.1, 0.1]), flat([0.5, 0.5, 0.5])])
    values = concept(redness, RED).value(images)
    bound = concept(redness, RED, target=values + 0.001)  # each image just short of its own target
    assert bound.accept(images).tolist() == [False, False]
    with pytest.raises(ValueError, match="direction"):
        concept(redness, RED, target=0.5, direction="towards")
    with pytest.raises(ValueError, match=r"text must be one \(D,\) text embedding"):
        concept(redness, torch.ones(2, 2), target=0.5)
    with pytest.raises(ValueError, match=r"encoder must return \(B, 3\) embeddings"):
        concept(redness, torch.ones(3), target=0.5).value(images)


# --- edits: one member per source --------------------------------------------------------------------------

def test_edit_starts_each_member_from_its_own_source(tiny_pixel_models):
    _, prior = tiny_pixel_models
    sources = torch.cat([flat([0.9, 0.1, 0.1]), flat([0.1, 0.1, 0.9]), flat([0.1, 0.8, 0.1])])
    sampler = RejectionSampler(num_steps=10, strength=0.3, batch_size=2)
    objective = concept(redness, RED, target=0.0)
    result = sampler.edit(prior, objective, sources, torch.Generator().manual_seed(0))
    assert len(result.images) == len(sources)
    distances = torch.cdist(result.images.flatten(1), sources.flatten(1))
    assert distances.argmin(1).tolist() == [0, 1, 2]  # member i is nearest its own source
    again = sampler.edit(prior, objective, sources, torch.Generator().manual_seed(0))
    assert torch.equal(result.images, again.images)


def test_guided_edit_moves_the_concept_beyond_its_unguided_twin(tiny_pixel_models):
    _, prior = tiny_pixel_models
    sources = flat([0.5, 0.5, 0.5], 4)
    objective = concept(redness, RED, target=0.99)
    guided = GuidedSampler(num_steps=10, strength=0.6, guidance_scale=1.0, through_denoiser=True, restarts=0,
                           guidance_interval=(0.0, 1.0))
    twin = RejectionSampler(num_steps=10, strength=0.6)
    edits = guided.edit(prior, objective, sources, torch.Generator().manual_seed(1)).images
    nulls = twin.edit(prior, objective, sources, torch.Generator().manual_seed(1)).images
    assert (objective.value(edits) > objective.value(nulls)).all()


def test_edit_refuses_samplers_that_cannot_start_members_from_their_own_sources(tiny_pixel_models):
    _, prior = tiny_pixel_models
    sources = flat([0.5, 0.5, 0.5], 2)
    objective = concept(redness, RED, target=0.9)
    with pytest.raises(ValueError, match="restarts=0"):
        GuidedSampler(num_steps=4, strength=0.5).edit(prior, objective, sources, torch.Generator())
    with pytest.raises(ValueError, match="NoiseOptSampler"):
        NoiseOptSampler(num_steps=2, iterations=1).edit(prior, objective, sources, torch.Generator())
    with pytest.raises(ValueError, match=r"sources must be a tensor of shape \(B, 3, 16, 16\)"):
        RejectionSampler(num_steps=4, strength=0.5).edit(prior, objective, sources[0], torch.Generator())


# --- interventions with a tiny open_clip model --------------------------------------------------------------

def test_interventions_move_the_clip_score_of_the_concept(tiny_pixel_models, tiny_clip):  # noqa: F811
    classifier, prior = tiny_pixel_models
    torch.manual_seed(0)
    images = torch.rand(6, 3, TINY_SIZE, TINY_SIZE)
    texts = tiny_clip.encode_texts(["a tag", "a circle", "a square"]).detach()
    space = ClipSpace(tiny_clip.encode_images, {"a tag": texts[0]}, texts[1:])
    readouts = {"square": lambda x: classifier(x).softmax(1)[:, 1]}
    settings = InterventionSettings(images=6, strengths=(0.5, 0.7), guidance_scale=1.0, num_steps=8,
                                    guidance_interval=(0.0, 1.0))
    table = intervene(prior, space, images, ["a tag"], readouts, settings).table
    assert len(table) == 6 and set(table["direction"]) == {"add", "remove"}  # the threshold splits the pool
    towards = np.where(table["direction"] == "add", 1, -1)
    assert (towards * (table["edit_similarity"] - table["null_similarity"]) > 0).mean() >= 5 / 6
    assert set(table["strength"]) <= {0.5, 0.7}
    with_minus_without = np.where(table["direction"] == "add", table["edit:square"] - table["null:square"],
                                  table["null:square"] - table["edit:square"])
    assert np.allclose(table["difference:square"], with_minus_without)


def test_concepts_to_test_are_each_groups_best_candidates():
    scores = pd.DataFrame({
        "group": ["square"] * 3 + ["size_up"] * 2 + ["neuron"],
        "kind": ["class"] * 3 + ["moved up"] * 2 + ["objective"],
        "concept": ["a tag", "a square", "a white background", "a dotted background", "a tag", "a blue shape"],
        "extrinsic": [True, False, True, True, True, True],
        "rank": [1, 0, 2, 1, 2, 1],
    })
    assert concepts_to_test(scores, 1, ["class", "moved up"]) == ["a dotted background", "a tag"]
    assert concepts_to_test(scores, 2, ["class"]) == ["a tag", "a white background"]


# --- effects and findings ----------------------------------------------------------------------------------

def test_effect_interval_on_hand_made_differences():
    settings = EffectSettings(resamples=1000)
    rng = np.random.default_rng(0)
    differences = 0.5 + 0.1 * rng.standard_normal(40)
    mean, low, high = mean_interval([differences], settings)
    assert mean == pytest.approx(differences.mean())
    assert low < mean < high and high - low < 0.1  # about 2 * 1.64 * 0.1 / sqrt(40) = 0.05
    wider = mean_interval([differences[:8]], settings)
    assert wider[2] - wider[1] > high - low
    assert np.isnan(mean_interval([differences[:3]], settings)[1])  # fewer than min_edits: no interval
    assert np.isnan(mean_interval([np.full(10, 0.2)], settings)[1])  # no spread: no interval


def test_a_side_effect_common_to_adding_and_removing_cancels():
    rng = np.random.default_rng(1)
    effect, side_effect = 0.3, 0.2  # the concept's own effect; what guidance changes besides, in either edit
    added = effect + side_effect + 0.05 * rng.standard_normal(30)
    removed = effect - side_effect + 0.05 * rng.standard_normal(12)  # with minus without = twin minus edit
    balanced, low, high = mean_interval([added, removed], EffectSettings(resamples=1000))
    assert balanced == pytest.approx((added.mean() + removed.mean()) / 2)
    assert low < effect < high and abs(balanced - effect) < 0.03
    assert mean_interval([added, removed[:3]], EffectSettings())[0] == pytest.approx(added.mean())  # too few removals


def test_findings_flag_clear_effects_and_file_mirrors_under_them():
    effects = pd.DataFrame({
        "concept": ["a tag", "a plain background", "a striped background", "a blue shape", "a tag"],
        "readout": ["square", "circle", "circle", "square", "circle"],
        "edits": 20, "tried": 40,
        "effect": [0.6, -0.4, 0.5, 0.05, -0.3],
        "low": [0.45, -0.55, 0.3, -0.05, -0.45],
        "high": [0.75, -0.25, 0.7, 0.15, -0.15],
    })
    verdicts = findings(effects, EffectSettings(min_effect=0.1)).set_index(["concept", "readout"])
    assert verdicts.loc[("a tag", "square"), "verdict"] == "finding"
    assert verdicts.loc[("a striped background", "circle"), "verdict"] == "finding"
    assert verdicts.loc[("a plain background", "circle"), "verdict"] == "mirror"
    assert verdicts.loc[("a plain background", "circle"), "mirror_of"] == "a striped background"
    assert verdicts.loc[("a blue shape", "square"), "verdict"] == "none"
    assert verdicts["flagged"].sum() == 2


def test_concept_effects_use_successful_edits_only():
    table = pd.DataFrame({"concept": "a tag", "success": [True] * 12 + [False] * 4,
                          "direction": ["add"] * 6 + ["remove"] * 6 + ["add"] * 4,
                          "difference:square": [0.5] * 3 + [0.7] * 3 + [0.2] * 3 + [0.4] * 3 + [-1.0] * 4})
    effects = concept_effects(table, EffectSettings(resamples=200))
    assert effects.loc[0, ["edits", "tried"]].tolist() == [12, 16]
    assert effects.loc[0, ["add_effect", "remove_effect"]].tolist() == pytest.approx([0.6, 0.3])
    assert effects.loc[0, "effect"] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="difference:<readout>"):
        concept_effects(table.drop(columns="difference:square"))


def test_regressor_findings_go_both_ways_and_score_as_its_moved_groups():
    effects = pd.DataFrame({
        "concept": ["a dotted background", "a plain background", "a tag"],
        "readout": ["regressor", "regressor", "square"],
        "edits": 20, "tried": 40,
        "effect": [0.3, -0.25, 0.5], "low": [0.2, -0.35, 0.4], "high": [0.4, -0.15, 0.6],
    })
    table = findings(effects, EffectSettings(min_effect=0.1), regression=["regressor"])
    assert table.set_index("concept").loc["a plain background", ["verdict", "direction"]].tolist() == ["finding", "down"]
    scores = as_scores(table).set_index(["kind", "concept"])
    assert scores.loc[("moved up", "a dotted background"), "flagged"]
    assert not scores.loc[("moved up", "a plain background"), "flagged"]
    assert scores.loc[("moved down", "a plain background"), ["flagged", "rank"]].tolist() == [True, 1]
    assert scores.loc[("class", "a tag"), ["class", "flagged"]].tolist() == ["square", True]
