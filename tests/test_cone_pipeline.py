"""The cone in the pipeline: `models.robust`, `cone_angle` in a sampler spec, what a set job loads and reruns on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from preimage.pipeline.config import ConfigError, cone_samplers, objective_samplers, validate_config, world_models
from preimage.pipeline.models import model_dir, resolve_robust
from preimage.pipeline.workflow import model_config, set_job_models

REPO = Path(__file__).resolve().parents[1]


def with_cone(config: dict, robust: dict | None = None) -> dict:
    """A cone sampler beside the default ones, and the default objectives the robust model can read (not the neuron,
    nor those read from the regressor)."""
    config["sets"]["samplers"]["dvce"] = {"kind": "guided", "cone_angle": 30}
    sets = config["sets"]
    for name in ["neuron", *(name for name, spec in sets["objectives"].items() if "model" in spec)]:
        del sets["objectives"][name]
        sets["sampler_overrides"].pop(name, None)
    if robust is not None:
        config["models"]["robust"] = robust
    return config


def test_a_cone_without_a_robust_model_is_refused_naming_the_sampler(config) -> None:
    with pytest.raises(ConfigError, match=r"cone_angle of sampler\(s\) \['dvce'\]: needs models.robust"):
        validate_config(with_cone(config))
    config["models"]["robust"] = {"source": "world"}
    validate_config(config)
    config["sets"]["samplers"]["dvce"]["cone_angle"] = 120
    with pytest.raises(ConfigError, match=r"sets.samplers.dvce: cone_angle must be null or in \(0.0, 90.0\], got 120"):
        validate_config(config)


def test_a_cone_with_an_objective_the_robust_model_cannot_read_is_refused_naming_it(config) -> None:
    config = with_cone(config, {"source": "world"})
    config["sets"]["objectives"]["mixed"] = {"kind": "sum", "parts": [{"kind": "label"},
                                                                      {"kind": "channel", "layer": "x", "channel": 1}]}
    with pytest.raises(ConfigError, match=r"sets.objectives.mixed.parts\[1\]: kind 'channel' cannot be read from "
                                          r"the robust model that spans the cone of sampler 'dvce'"):
        validate_config(config)


def test_an_override_gives_the_cone_to_one_objective_and_only_that_objective_must_be_readable(config) -> None:
    """The default objectives keep their neuron: the counterfactual alone is drawn with a cone (DVCE)."""
    config["models"]["robust"] = {"source": "world"}
    config["sets"]["sampler_overrides"] = {"counterfactual": {"guided": {"cone_angle": 30}}}
    validated = validate_config(config)
    assert set_job_models(validated) == ("classifier", "prior", "robust", "regressor")
    config["sets"]["sampler_overrides"] = {"neuron": {"guided": {"cone_angle": 30}}}
    with pytest.raises(ConfigError, match=r"sets.objectives.neuron: kind 'neuron' cannot be read from the robust "
                                          r"model .*\(sets.sampler_overrides.neuron.guided: \{cone_angle: null\}"):
        validate_config(config)


def test_the_robust_model_loads_only_for_a_set_job_with_a_cone(config) -> None:
    validate_config(config)
    assert set_job_models(config) == ("classifier", "prior", "regressor") and "robust" not in world_models(config)
    plain = model_config(config, *set_job_models(config))
    assert "robust" not in plain["training"] and "robust" not in plain["models"]
    with pytest.raises(ValueError, match="models.robust: not given"):
        resolve_robust(config, "cpu")
    coned = validate_config(with_cone(config, {"source": "world"}))
    assert set_job_models(coned) == ("classifier", "prior", "robust") and "robust" in world_models(coned)
    settings = model_config(coned, *set_job_models(coned))
    assert settings["training"]["robust"] == coned["training"]["robust"]
    assert settings["models"]["robust"] == {"pretrained_file": None, "source": "world"}


def test_the_robust_model_is_named_by_the_biased_data_and_its_own_settings(config) -> None:
    validate_config(config)
    robust = model_dir(config, "robust")
    assert robust.startswith("models/shortcut-world/robust-") and robust != model_dir(config, "classifier")
    config["training"]["robust"]["attack"]["epsilon"] = 1.0
    assert model_dir(config, "robust") != robust
    config["world"]["splits"]["prior_train"] = 100  # unbiased data only: the robust model keeps its folder
    config["training"]["robust"]["attack"]["epsilon"] = 0.5
    assert model_dir(config, "robust") == robust


def test_the_committed_robust_model_loads_as_a_classifier(config) -> None:
    model = resolve_robust(validate_config(with_cone(config, {"source": "world"})), "cpu")
    assert model.label_names == config["world"]["shapes"]


def test_the_dvce_preset_gives_the_default_runs_guided_counterfactual_a_cone(config) -> None:
    overlay = yaml.safe_load((REPO / "presets" / "dvce.yaml").read_text())
    update_config(config, overlay)  # what `snakemake --configfile presets/dvce.yaml` does
    merged = validate_config(config, source="dvce.yaml")
    assert cone_samplers(merged["sets"]) == {"counterfactual": ["guided"]}
    edit = objective_samplers(merged["sets"], "counterfactual")["guided"]
    assert edit["cone_angle"] == 30 and edit["strength"] == 0.7  # the minimal edit of config.yaml, with a cone
    assert set_job_models(merged) == ("classifier", "prior", "robust", "regressor")
