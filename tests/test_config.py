"""The configuration: defaults from the schema, the world's sections only where the world is used, and rule
params that depend only on what a rule reads."""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest
import torch
import yaml

from preimage.analysis.concepts.clustering import ClusterSettings
from preimage.analysis.concepts.effects import EffectSettings
from preimage.analysis.concepts.interventions import InterventionSettings
from preimage.analysis.concepts.spurious import SpuriousSettings
from preimage.analysis.report.build import FigureSettings
from preimage.engine.objectives import spec as objective_spec
from preimage.engine.samplers import GuidedSampler, RejectionSampler
from preimage.engine.samplers import spec as sampler_spec
from preimage.engine.samplers.spec import from_config
from preimage.pipeline.config import (
    ConfigError,
    check_yaml,
    load_config,
    objective_samplers,
    schema_defaults,
    set_kinds,
    typed_overrides,
    validate_config,
    world_uses,
)
from preimage.pipeline.workflow import canonical, model_config, select_sources, set_ids


def real_run(config: dict) -> dict:
    """config.yaml turned into a run on real models and images, without the world's sections."""
    real = copy.deepcopy(config)
    for key in ("world", "training", "evaluation"):
        real.pop(key)
    real["models"] = {"classifier": {"source": "models/my-classifier"}, "prior": {"source": "models/my-sd"},
                      "clip": {"source": "models/my-clip"}, "regressor": {"source": "models/my-regressor"}}
    real["sets"]["sources"] = {"kind": "folder", "path": "data/images", "per_class": 2, "seed": 0}
    real["concepts"].update(vocabulary="common", baseline_split="sources", real_split="sources")
    real["directions"]["split"] = "sources"
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


def test_the_latent_unets_attention_flags_name_each_of_its_levels(config) -> None:
    unet = config["training"]["latent"]["unet"]
    levels = len(unet["block_out_channels"])
    unet["attention"] = [False] + [True] * (levels - 1)
    validate_config(copy.deepcopy(config))
    unet["attention"] = [False] * (levels + 1)
    with pytest.raises(ConfigError, match=rf"training.latent.unet.attention: .* {levels + 1} entries; expected one "
                                          r"per level of training.latent.unet.block_out_channels"):
        validate_config(config)


def test_library_sampler_defaults_are_the_tuned_ones_the_default_run_uses(config) -> None:
    """The guided sampler's defaults are the world's tuned settings, and the world's run states its one approach
    step (the library keeps the schedule's own approach for priors it was not measured on); rejection keeps DDIM's
    25 steps as its library default (it takes eta, and suits any prior), and the world's run states its 8 UniPC
    steps, which the reference shares so that a pool of reference draws can serve the rejection sets."""
    given = validate_config(config)
    samplers = given["sets"]["samplers"]
    assert samplers == {"guided": {"kind": "guided", "approach_steps": 1},
                        "rejection": {"kind": "rejection", "num_steps": 8, "solver": "unipc"}}
    guided = from_config(samplers["guided"])
    assert guided.describe() == GuidedSampler(approach_steps=1).describe() and GuidedSampler().approach_steps is None
    assert (guided.num_steps, guided.guidance_scale, guided.guidance_interval, guided.batch_size, guided.restarts,
            guided.gradient_dtype) == (25, 0.08, (0.0, 0.85), 64, 2, "auto")
    assert (RejectionSampler().num_steps, RejectionSampler().solver, RejectionSampler().batch_size) == (25, "ddim", 64)
    rejection = from_config(samplers["rejection"])
    assert (rejection.num_steps, rejection.solver) == (given["reference"]["num_steps"], given["reference"]["solver"])


@pytest.mark.parametrize("settings, section", [(ClusterSettings, ("concepts", "clusters")),
                                               (SpuriousSettings, ("concepts", "spurious")),
                                               (InterventionSettings, ("concepts", "interventions")),
                                               (EffectSettings, ("concepts", "effects")),
                                               (FigureSettings, ("report",))])
def test_library_settings_defaults_are_the_default_runs(config, settings, section) -> None:
    given = validate_config(config)
    for key in section:
        given = given[key]
    as_given = {f.name: tuple(given[f.name]) if isinstance(given[f.name], list) else given[f.name]
                for f in fields(settings)}
    assert as_given == asdict(settings())


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
    with pytest.raises(ConfigError, match=named) as error:
        validate_config(config)
    assert "is not allowed; expected" in str(error.value) and "does not match" not in str(error.value)  # no regex


def test_a_refused_pattern_is_explained_by_the_schemas_words(config) -> None:
    config["concepts"]["prompt_template"] = "a photo of {word}"
    config["sets"]["objectives"]["keep__label"] = {"kind": "label"}
    problems = invalid(config)
    assert "concepts.prompt_template: value 'a photo of {word}' is not allowed; expected a concept's CLIP prompt" \
           in problems and "one `{}` for the concept's name, no other braces" in problems
    assert "sets.objectives: name 'keep__label' is not allowed; expected letters, digits, `_` and `-`, no `__`" \
           in problems


# --- objective and sampler specs, checked when the config is read ------------------------------------------------


def invalid(config: dict, source: str = "my.yaml") -> str:
    with pytest.raises(ConfigError) as error:
        validate_config(config, source=source)
    return str(error.value)


@pytest.mark.parametrize("section, name, spec, message", [
    ("samplers", "guided", {"kind": "guided", "guidance_scal": 0.1},
     "sets.samplers.guided: field 'guidance_scal' is not allowed for kind 'guided'; allowed: ['approach_steps', "),
    ("samplers", "guided", {"kind": "guided", "guidance_scal": 0.1}, "(did you mean 'guidance_scale'"),
    ("samplers", "rejection", {"kind": "rejection", "num_steps": 0}, "sets.samplers.rejection: num_steps must be an int >= 1, got 0"),
    ("samplers", "guided", {"kind": "guided", "approach_steps": 0},
     "sets.samplers.guided: approach_steps must be null or an int >= 1, got 0"),
    ("samplers", "fast", {"kind": "noise_opt", "strength": 1.5}, "sets.samplers.fast: strength must be in (0.0, 1.0], got 1.5"),
    ("samplers", "guided", {"kind": "guided", "guidance_interval": [0.9, 0.1]}, "sets.samplers.guided: guidance_interval must be"),
    ("samplers", "guided", {"kind": "guided", "repulsion_space": "clip"}, "repulsion_space must be one of ['pixels', 'lpips']"),
    ("objectives", "neuron", {"kind": "neuron", "layer": "layer4", "unit": -1},
     "sets.objectives.neuron: unit must be an integer >= 0, got -1"),
    ("objectives", "neuron", {"kind": "neuron", "layer": "layer4"}, "sets.objectives.neuron: kind 'neuron' needs field 'unit'"),
    ("objectives", "lowpass", {"kind": "lowpass", "factor": 8, "tolerence": 0.1},
     "sets.objectives.lowpass: field 'tolerence' is not allowed for kind 'lowpass'"),
    ("objectives", "region", {"kind": "masked", "box": [0, 0, 40, 8], "image_size": 32}, "sets.objectives.region: box [0, 0, 40, 8]"),
    ("objectives", "odd", {"kind": "features", "layer": "layer4", "metric": "l1"}, "sets.objectives.odd: metric must be one of ['l2', 'cosine']"),
    ("objectives", "cf", {"kind": "label", "target": 2.5}, "sets.objectives.cf: target must be 'source', a class name or a class index"),
    ("objectives", "cf", {"kind": "label", "target_scale": 2.0}, "field 'target_scale' is not allowed for kind 'label'"),
    ("objectives", "p", {"kind": "probs", "target": [0.5, 0.6]}, "sets.objectives.p: target must be a probability vector"),
    ("objectives", "both", {"kind": "sum", "parts": [{"kind": "label"}, {"kind": "lowpass", "factor": 0}]},
     "sets.objectives.both.parts[1]: factor must be an integer >= 1, got 0"),
    ("objectives", "other", {"kind": "label", "model": "oracle"},
     "sets.objectives.other: field 'model': unknown model 'oracle'; named models: regressor"),
])
def test_objective_and_sampler_specs_are_checked_when_the_config_is_read(config, section, name, spec, message) -> None:
    config["sets"][section][name] = spec
    text = invalid(config)
    assert message in text and text.startswith("my.yaml is invalid:"), text


def test_every_bad_spec_is_named_at_once_and_the_default_specs_pass(config) -> None:
    validate_config(copy.deepcopy(config))
    config["sets"]["samplers"]["guided"]["eta"] = -1
    config["sets"]["objectives"]["neuron"]["rel_tolerance"] = 0
    text = invalid(config)
    assert "sets.samplers.guided: eta must be in [0.0, inf], got -1" in text
    assert "sets.objectives.neuron: rel_tolerance must be a finite number > 0, got 0" in text


@pytest.mark.parametrize("overrides, message", [
    ({"counterfactal": {"guided": {"strength": 0.5}}},
     "sets.sampler_overrides.counterfactal: no such objective; sets.objectives has ['counterfactual', 'label', "),
    ({"counterfactual": {"guidd": {"strength": 0.5}}},
     "sets.sampler_overrides.counterfactual.guidd: no such sampler; sets.samplers has ['guided', 'rejection']"),
    ({"counterfactual": {"guided": {"kind": "rejection"}}},
     "sets.sampler_overrides.counterfactual.guided: 'kind' cannot be overridden (it is 'guided' in sets.samplers)"),
    ({"counterfactual": {"guided": {"strength": 1.5}}},
     "sets.sampler_overrides.counterfactual.guided: strength must be in (0.0, 1.0], got 1.5"),
    ({"counterfactual": {"rejection": {"distance_weight": 0.1}}},
     "sets.sampler_overrides.counterfactual.rejection: field 'distance_weight' is not allowed for kind 'rejection'"),
    ({"counterfactual": {"guided": [0.5]}}, "sets.sampler_overrides.counterfactual.guided"),
    ({"counterfactual": {"guided": True}}, "sets.sampler_overrides.counterfactual.guided"),
    ({"counterfactual": {"rejectoin": False}},
     "sets.sampler_overrides.counterfactual.rejectoin: no such sampler; sets.samplers has ['guided', 'rejection']"),
])
def test_sampler_overrides_name_a_configured_objective_and_sampler_and_merge_into_a_valid_spec(
        config, overrides, message) -> None:
    config["sets"]["sampler_overrides"] = overrides
    text = invalid(config)
    assert message in text, text


def test_an_objective_draws_with_its_overrides_merged_over_the_samplers(config) -> None:
    sets = validate_config(config)["sets"]
    sets["sampler_overrides"] = {"counterfactual": {"guided": {"strength": 0.6, "distance_weight": 0.3}}}
    edited = objective_samplers(sets, "counterfactual")
    assert edited["guided"] == {**sets["samplers"]["guided"], "strength": 0.6, "distance_weight": 0.3}
    assert edited["rejection"] == sets["samplers"]["rejection"]
    assert objective_samplers(sets, "label") == sets["samplers"]
    assert isinstance(from_config(edited["guided"]), GuidedSampler) and from_config(edited["guided"]).strength == 0.6


def test_a_sampler_overridden_with_false_draws_no_set_of_that_objective(config) -> None:
    config["sets"]["sampler_overrides"]["size"] = {"rejection": False}
    config = validate_config(config)
    assert list(objective_samplers(config["sets"], "size")) == ["guided"]
    assert ("size", "rejection") not in set_kinds(config["sets"]) and ("size", "guided") in set_kinds(config["sets"])
    ids = set_ids(config)
    assert not [i for i in ids if i.endswith("__size__rejection")]
    assert len(ids) == len(select_sources(config)) * (2 * len(config["sets"]["objectives"]) - 1)


def test_reading_the_config_imports_no_model_library(config) -> None:
    """validate_config runs at every Snakemake parse and every job's start: the spec checks stay pure Python."""
    code = ("import sys, yaml\nfrom preimage.pipeline.config import validate_config\n"
            "validate_config(yaml.safe_load(open('config.yaml')))\n"
            "print(' '.join(m for m in ('torch', 'diffusers', 'timm', 'open_clip') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0 and run.stdout.split() == [], run.stdout + run.stderr


def test_the_sampler_check_knows_each_samplers_keywords_and_ranges() -> None:
    """sampler_spec.PARAMETERS is a torch-free copy of the samplers' __init__ arguments: it must list the same
    keywords, accept their defaults and refuse what the samplers refuse."""
    from preimage.engine import samplers
    from preimage.engine.priors.base import SOLVERS

    assert sampler_spec.SOLVERS == SOLVERS
    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "src/preimage/pipeline/config.schema.yaml").read_text())
    assert tuple(schema["properties"]["reference"]["properties"]["solver"]["enum"]) == SOLVERS
    for kind, class_name in sampler_spec.CLASSES.items():
        cls = getattr(samplers, class_name)
        parameters = inspect.signature(cls.__init__).parameters
        keywords = set(parameters) - {"self"}
        stand_ins = {"repulsion_features": "repulsion_space", "cone": "cone_angle"}  # objects the spec builds
        expected = keywords - set(stand_ins) | {stand_ins[key] for key in keywords & set(stand_ins)}
        assert set(sampler_spec.PARAMETERS[kind]) == expected, kind
        defaults = {name: p.default for name, p in parameters.items() if name in sampler_spec.PARAMETERS[kind]}
        sampler_spec.check_config({"kind": kind, **defaults})
        for name in sampler_spec.PARAMETERS[kind]:
            for bad in (-1, 0, 1.5, "x", True, None, [0.5, 0.2]):
                if name in stand_ins.values():
                    continue
                try:
                    cls(**{name: bad})
                except (ValueError, TypeError):
                    refused_by_class = True
                else:
                    refused_by_class = False
                try:
                    sampler_spec.check_config({"kind": kind, name: bad})
                except ValueError:
                    refused_by_check = True
                else:
                    refused_by_check = False
                assert refused_by_check == refused_by_class, (kind, name, bad)


def test_objective_specs_check_without_a_model() -> None:
    objective_spec.check_config({"kind": "sum", "parts": [{"kind": "label", "weight": 2}, {"kind": "lowpass", "factor": 4}]})
    objective_spec.check_config({"kind": "label", "target": "square"})  # a class name: the model knows its classes
    objective_spec.check_config({"kind": "neuron", "layer": "layer4.0.bn2", "unit": 3, "location": [1, 2],
                                 "target_scale": 2.0})
    with pytest.raises(ValueError, match=r"^objective spec: unknown kind 'nueron'.*\(did you mean 'neuron'\?\)"):
        objective_spec.check_config({"kind": "nueron"})
    with pytest.raises(ValueError, match=r"^sets.objectives.x: location must be null"):
        objective_spec.check_config({"kind": "neuron", "layer": "a", "unit": 0, "location": [1]}, "sets.objectives.x")


# --- YAML syntax errors name the file and line ----------------------------------------------------------------------


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sets:\n  members: 4\n  objectives: {label: {kind: label}\n  seed: 0\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    assert str(error.value).startswith(f"{bad}, line 4, column 3: invalid YAML: expected ',' or '}}'"), str(error.value)
    assert "flow mapping at line 3" in str(error.value)
    bad.write_text("sets:\n  members: 4\n   seed: 0\n")
    with pytest.raises(ConfigError, match=rf"^{bad}, line 3, column 8: invalid YAML: mapping values are not allowed"):
        check_yaml(tmp_path / "absent.yaml", bad)  # what the Snakefile runs on config.yaml; absent files pass
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of configuration keys at the top level, got list"):
        load_config(bad)


def test_the_every_class_preset_adds_guided_counterfactuals_towards_each_other_class(config) -> None:
    from snakemake.utils import update_config

    preset = Path(__file__).resolve().parents[1] / "presets" / "counterfactuals_every_class.yaml"
    update_config(config, yaml.safe_load(preset.read_text()))
    sets = validate_config(config)["sets"]
    targets = {spec["target"] for spec in sets["objectives"].values() if spec["kind"] == "label" and "target" in spec}
    assert targets == set(config["world"]["shapes"])
    for objective in ("to_circle", "to_triangle", "to_cross"):
        assert list(objective_samplers(sets, objective)) == ["guided"]
        assert objective_samplers(sets, objective)["guided"]["strength"] == 0.7


def test_a_shared_rejection_pool_must_hold_at_least_one_set(config) -> None:
    config["sets"]["rejection_pool"] = {"kind": "shared", "members": 16}
    assert "sets.rejection_pool.members: 16 draws cannot serve sets of sets.members = 32" in invalid(config)
    config["sets"]["rejection_pool"] = {"kind": "shared", "members": 32}
    assert validate_config(config)["sets"]["rejection_pool"] == {"kind": "shared", "members": 32, "seed": 2}


def test_a_pool_that_no_rejection_sampler_draws_like_is_refused(config) -> None:
    """The pool draws as the reference does: a run whose rejection sets walk other chains (25 DDIM steps against the
    reference's 8 UniPC steps) could test none of its draws, so the config says so instead of drawing it."""
    config["sets"]["samplers"]["rejection"] = {"kind": "rejection"}
    message = invalid(config)
    assert ("sets.rejection_pool.kind: 'shared', but no rejection sampler draws as the pool does (from pure noise with "
            "reference.num_steps = 8 and reference.solver = 'unipc'") in message
    config["sets"]["samplers"]["rejection"] = {"kind": "rejection", "num_steps": 8, "solver": "unipc"}
    validate_config(config)
    config["sets"]["samplers"] = {"guided": {"kind": "guided"}}  # no rejection sampler: no pool is drawn
    validate_config(copy.deepcopy(config))
    config["sets"]["rejection_pool"] = {"kind": "none"}
    config["sets"]["samplers"]["rejection"] = {"kind": "rejection"}
    validate_config(config)


def test_the_torch_free_pool_test_agrees_with_the_pools_own() -> None:
    from preimage.engine.samplers import DrawPool

    defaults = inspect.signature(RejectionSampler.__init__).parameters
    assert {name: defaults[name].default for name in sampler_spec.REJECTION_DRAW_DEFAULTS} == \
        sampler_spec.REJECTION_DRAW_DEFAULTS
    pool = DrawPool(torch.zeros(1, 3, 4, 4), torch.zeros(1), torch.zeros(1), torch.zeros(1), num_steps=12, eta=0.0,
                    solver="dpmsolver++")
    for spec in ({}, {"num_steps": 12}, {"num_steps": 12, "solver": "dpmsolver++"},
                 {"num_steps": 12, "solver": "dpmsolver++", "strength": 0.5},
                 {"num_steps": 12, "solver": "dpmsolver++", "stop_after_accepted": 4}):
        assert sampler_spec.draws_as_pool({"kind": "rejection", **spec}, 12, "dpmsolver++") == \
            pool.serves(RejectionSampler(**spec)), spec


def test_the_minimum_call_rate_is_a_share(config) -> None:
    config["concepts"]["spurious"]["min_call_rate"] = 1.5
    assert "concepts.spurious.min_call_rate" in invalid(config)
    del config["concepts"]["spurious"]["min_call_rate"]
    assert validate_config(config)["concepts"]["spurious"]["min_call_rate"] == 0.1


def test_a_world_classifiers_label_targets_are_checked_when_the_config_is_read(config) -> None:
    """The world classifier's classes are world.shapes: a counterfactual to another class (or past the last index,
    in a sum's part too) is refused while the workflow is planned, not by the objectives' check job."""
    objectives = config["sets"]["objectives"]
    objectives["to_hexagon"] = {"kind": "label", "target": "hexagon"}
    objectives["pair"] = {"kind": "sum", "parts": [{"kind": "label", "target": [1, 4]}, {"kind": "lowpass", "factor": 8}]}
    problems = invalid(config)
    assert "sets.objectives.to_hexagon.target: 'hexagon' is not a class of the world's classifier; give one of " \
           "world.shapes ['circle', 'square', 'triangle', 'cross'] or its index 0-3" in problems
    assert "sets.objectives.pair.parts[0].target: 4 is not a class" in problems and "target: 1 " not in problems
    objectives["to_hexagon"]["target"], objectives["pair"]["parts"][0]["target"] = "cross", [1, 3]
    validate_config(config)


def test_a_vocabulary_must_be_built_in_or_a_file(config, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a vocabulary path is relative to the working directory
    config["concepts"]["vocabulary"] = "my_words.txt"
    assert "concepts.vocabulary: 'my_words.txt' is neither 'world', a built-in vocabulary ('common') nor a file" \
           in invalid(config)
    (tmp_path / "my_words.txt").write_text("a tag\n")
    for vocabulary in ("my_words.txt", "common", "world"):
        config["concepts"]["vocabulary"] = vocabulary
        validate_config(copy.deepcopy(config))


def test_config_overrides_read_as_strings_take_their_yaml_types(config) -> None:
    """Snakemake reads `--config sets='{members: 8, objectives: {lowpass: null}}'` with YAML's base loader, every
    scalar a string; numbers, booleans and null get their types back, other strings stay as written."""
    overrides = {"sets": {"members": "8", "objectives": {"lowpass": "null", "counterfactual": {"target": "cross"}}},
                 "concepts": {"interventions": {"enabled": "true", "strengths": ["0.5", "0.9"]},
                              "prompt_template": "a photo of {}."},
                 "directions": {"targets": ["square"], "magnitude": "0.5"}, "device": "cpu"}
    for section in ("sets", "concepts", "directions"):  # what Snakemake's merge of the overrides leaves
        merge(config[section], overrides[section])
    config["device"] = "cpu"
    typed_overrides(config, overrides)
    validated = validate_config(config)
    assert validated["sets"]["members"] == 8 and "lowpass" not in validated["sets"]["objectives"]
    assert validated["sets"]["objectives"]["counterfactual"]["target"] == "cross"
    assert validated["concepts"]["interventions"]["enabled"] is True
    assert validated["concepts"]["interventions"]["strengths"] == [0.5, 0.9]
    assert validated["concepts"]["prompt_template"] == "a photo of {}." and validated["device"] == "cpu"
    assert validated["directions"]["magnitude"] == 0.5 and validated["directions"]["targets"] == ["square"]


def merge(section: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            merge(section[key], value)
        else:
            section[key] = value


def test_an_override_keeps_a_string_where_the_schema_wants_one(config) -> None:
    """A title or a class name that reads as a number stays a string; null still removes what it may remove."""
    overrides = {"report": {"title": "2024"}, "directions": {"targets": ["square"], "split": "unbiased_test"},
                 "models": {"regressor": "null"}, "sets": {"objectives": {"size": "null", "size_up": "null",
                                                                         "size_down": "null"},
                                                          "sampler_overrides": {"size_up": "null", "size_down": "null"}}}
    for section in overrides:
        merge(config[section], overrides[section])
    typed_overrides(config, overrides)
    validated = validate_config(config)
    assert validated["report"]["title"] == "2024" and validated["directions"]["split"] == "unbiased_test"
    assert "regressor" not in validated["models"] and "size" not in validated["sets"]["objectives"]
