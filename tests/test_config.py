"""The configuration: defaults from the schema, the world's sections only where the world is used, and rule
params that depend only on what a rule reads."""

from __future__ import annotations

import copy
from dataclasses import asdict, fields

import pytest

from preimage.analysis.concepts.clustering import ClusterSettings
from preimage.analysis.concepts.spurious import SpuriousSettings
from preimage.analysis.report.build import FigureSettings
from preimage.engine.samplers import GuidedSampler, RejectionSampler
from preimage.engine.samplers.spec import from_config
from preimage.pipeline.config import (
    ConfigError,
    schema_defaults,
    validate_config,
    world_uses,
)
from preimage.pipeline.workflow import canonical, model_config


def real_run(config: dict) -> dict:
    """config.yaml turned into a run on real models and images, without the world's sections."""
    real = copy.deepcopy(config)
    for key in ("world", "training", "evaluation"):
        real.pop(key)
    real["models"] = {"classifier": {"source": "models/my-classifier"}, "prior": {"source": "models/my-sd"},
                      "clip": {"source": "models/my-clip"}}
    real["sets"]["sources"] = {"kind": "folder", "path": "data/images", "per_class": 2, "seed": 0}
    real["concepts"].update(vocabulary="common", baseline_split="sources", real_split="sources")
    real["report"]["evaluate"] = False
    return real


def test_a_real_run_needs_no_world_training_or_evaluation_section(config) -> None:
    real = validate_config(real_run(config))
    assert world_uses(real) == []
    assert real["models"]["prior"] == {"source": "models/my-sd", "prompt": "", "negative_prompt": "",
                                       "cfg_scale": 0.0, "timestep_spacing": "trailing", "dtype": "auto"}
    assert real["models"]["classifier"]["pretrained_file"] is None
    assert real["concepts"]["real_images"] == schema_defaults("concepts")["real_images"]
    assert "world" not in model_config(real) and "training" not in model_config(real)


@pytest.mark.parametrize("key, value, use", [
    (("models", "clip"), {"source": "world"}, "models.clip.source = world"),
    (("concepts", "vocabulary"), "world", "concepts.vocabulary = world"),
    (("concepts", "baseline_split"), "broken_test", "concepts.baseline_split = broken_test"),
    (("report", "evaluate"), True, "report.evaluate = true"),
])
def test_the_world_section_is_required_by_whatever_uses_it(config, key, value, use) -> None:
    real = real_run(config)
    real[key[0]][key[1]] = value
    with pytest.raises(ConfigError, match="world: required because") as error:
        validate_config(real, source="my.yaml")
    assert use in str(error.value) and "my.yaml" in str(error.value)


def test_world_models_also_need_their_training_settings(config) -> None:
    del config["training"]
    with pytest.raises(ConfigError, match="training: required because models.classifier.source = world"):
        validate_config(config)


def test_library_sampler_defaults_are_the_tuned_ones_the_default_run_uses(config) -> None:
    samplers = validate_config(config)["sets"]["samplers"]
    assert samplers == {"guided": {"kind": "guided"}, "rejection": {"kind": "rejection"}}
    guided = from_config(samplers["guided"])
    assert guided.describe() == GuidedSampler().describe()
    assert (guided.num_steps, guided.guidance_scale, guided.guidance_interval, guided.batch_size, guided.restarts,
            guided.gradient_dtype) == (25, 0.08, (0.0, 0.85), 64, 2, "auto")
    assert (RejectionSampler().num_steps, RejectionSampler().batch_size) == (25, 64)


@pytest.mark.parametrize("settings, section", [(ClusterSettings, ("concepts", "clusters")),
                                               (SpuriousSettings, ("concepts", "spurious")),
                                               (FigureSettings, ("report",))])
def test_library_settings_defaults_are_the_default_runs(config, settings, section) -> None:
    given = validate_config(config)
    for key in section:
        given = given[key]
    assert {f.name: given[f.name] for f in fields(settings)} == asdict(settings())


def test_rule_params_ignore_the_order_of_config_keys(config) -> None:
    validate_config(config)
    reordered = {key: config[key] for key in reversed(list(config))}
    reordered["models"] = {kind: dict(reversed(list(spec.items()))) for kind, spec in config["models"].items()}
    assert repr(model_config(reordered)) == repr(model_config(config))
    assert repr(canonical({"b": [{"d": 1, "c": 2}], "a": 0})) == repr({"a": 0, "b": [{"c": 2, "d": 1}]})


@pytest.mark.parametrize("section, key, value, named", [
    ("sets", "objectives", {"keep__label": {"kind": "label"}}, "sets.objectives"),
    ("sets", "samplers", {"fast__guided": {"kind": "guided"}}, "sets.samplers"),
    ("concepts", "prompt_template", "a {word} photo of {}.", "concepts.prompt_template"),
    ("concepts", "class_template", "a photo of a class.", "concepts.class_template"),
])
def test_names_that_would_break_set_ids_and_templates_with_other_placeholders_are_refused(config, section, key,
                                                                                           value, named) -> None:
    config[section][key] = value
    with pytest.raises(ConfigError, match=named):
        validate_config(config)
