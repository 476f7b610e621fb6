"""Load and validate the pipeline configuration against its JSON schema (src/preimage/config.schema.yaml).

The schema is the one place the configuration's defaults live: `validate_config` fills every key left out that
has a `default` there, so config.yaml, the presets and a notebook's partial dict all mean the same run.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Collection, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from preimage.analysis.concepts.vocabulary import BUILTIN_VOCABULARIES
from preimage.engine.objectives import spec as objective_spec
from preimage.engine.samplers import spec as sampler_spec
from preimage.world.generator import SPLIT_KINDS, WorldSpec

WORLD = "world"
SOURCES = "sources"  # concepts.baseline_split / real_split: the images of sets.sources' folder or manifest
# robust: optional, for a guided sampler's cone; regressor: optional, for objectives naming it
MODEL_KINDS = ("classifier", "prior", "clip", "robust", "regressor")
# the optional models an objective's `model` field may name (sets.objectives.<name>.model), when configured
NAMED_MODELS = ("regressor",)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


def _schema() -> dict:
    """The config schema, a fresh copy for each caller (callers may complete or change what they get)."""
    return copy.deepcopy(_parsed_schema())


@functools.cache
def _parsed_schema() -> dict:
    # parsed once per process: planning and every job ask for it many times; libyaml's loader where PyYAML has it
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(resources.files(__package__).joinpath("config.schema.yaml").read_text(), Loader=loader)


def _with_defaults(validator_class: type) -> type:
    """A validator class that also writes each missing property's schema `default` into the instance
    (the jsonschema documentation's recipe, as `snakemake.utils.validate(set_default=True)` does)."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, schema_properties, instance, schema) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in schema_properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = yaml.safe_load(yaml.safe_dump(subschema["default"]))  # a fresh copy
        yield from check_properties(validator, schema_properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


DefaultingValidator = _with_defaults(jsonschema.Draft7Validator)


def schema_defaults(*path: str) -> dict[str, Any]:
    """{key: default} of the schema section at `path` (e.g. "models", "prior"), for code that completes a
    partial section itself."""
    node = _parsed_schema()
    for key in path:
        node = _schema_child(node, key)
    return {key: copy.deepcopy(sub["default"]) for key, sub in node.get("properties", {}).items() if "default" in sub}


def _key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _explain(error: jsonschema.ValidationError) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {unknown}; allowed keys are {allowed}"
    if error.validator == "pattern" and "description" in error.schema:  # the description says it better than a regex
        what = "name" if "propertyNames" in error.schema_path else "value"
        return f"{where}: {what} {error.instance!r} is not allowed; expected {error.schema['description']}"
    return f"{where}: {error.message}"


def world_uses(config: dict) -> list[str]:
    """The config keys that use the shortcut world (its models, splits, vocabulary or ground truth), as
    'key = value' lines; empty for a run on real models and images only."""
    uses = [f"models.{kind}.source = world" for kind in MODEL_KINDS
            if (config.get("models") or {}).get(kind, {}).get("source") == WORLD]
    sets = config.get("sets") or {}
    if (sets.get("sources") or {}).get("kind") == WORLD:
        uses.append("sets.sources.kind = world")
    concepts = config.get("concepts") or {}
    if concepts.get("vocabulary") == WORLD:
        uses.append("concepts.vocabulary = world")
    uses += [f"concepts.{key} = {concepts[key]}" for key in ("baseline_split", "real_split")
             if concepts.get(key) in SPLIT_KINDS]
    directions = schema_defaults("directions") | (config.get("directions") or {})
    if directions["targets"] and directions["split"] in SPLIT_KINDS:
        uses.append(f"directions.split = {directions['split']}")
    if (config.get("report") or {}).get("evaluate"):
        uses.append("report.evaluate = true")
    return uses


def world_models(config: dict) -> list[str]:
    """The model kinds (`models.<kind>`) that are the world's own trained models."""
    return [kind for kind in MODEL_KINDS if config["models"].get(kind, {}).get("source") == WORLD]


def available_named_models(config: dict) -> tuple[str, ...]:
    """The models an objective's `model` field may name in this config: those of NAMED_MODELS under `models`."""
    return tuple(kind for kind in NAMED_MODELS if kind in (config.get("models") or {}))


def shared_world(config: dict) -> dict:
    """The `world` section without its regression task: what the world's splits and every model but the
    regressor depend on, so adding or editing `world.regression` reruns only the regressor and the ground truth."""
    return {key: value for key, value in config["world"].items() if key != "regression"}


def world_section(config: dict, kinds: Collection[str]) -> dict:
    """The part of `world` that the world models `kinds` depend on: all of it with the regressor, else
    `shared_world`."""
    return config["world"] if "regressor" in kinds else shared_world(config)


def models_named(objectives: dict) -> tuple[str, ...]:
    """The models that the objective specs `objectives` (name -> spec, as `sets.objectives`) name in a `model`
    field (a sum's parts too), sorted: the models a job drawing or checking them loads besides the classifier."""
    return tuple(sorted({leaf["model"] for spec in objectives.values() for _, leaf in objective_spec.leaves(spec)
                         if "model" in leaf and leaf["kind"] != "function"}))


def regression_objectives(objectives: dict) -> dict:
    """The regression objectives of `objectives` (name -> spec, as `sets.objectives`)."""
    return {name: spec for name, spec in objectives.items() if spec.get("kind") == "regression"}


# the sections whose entries an overlay may remove by setting them to null (a --configfile overlay merges into
# config.yaml and cannot delete a key): its objectives, samplers and their overrides, and the optional models
REMOVABLE = (("sets", "objectives"), ("sets", "samplers"), ("sets", "sampler_overrides"), ("models",))


def _drop_removed(config: dict) -> None:
    """Remove (in place) the entries of the REMOVABLE sections set to null, e.g. `sets.objectives.size: null` in
    an overlay that explains another classifier with no regressor; a null classifier, prior or CLIP model stays,
    so the schema names it."""
    for path in REMOVABLE:
        section = config
        for key in path:
            section = section.get(key) if isinstance(section, dict) else None
        if not isinstance(section, dict):
            continue
        for name in [name for name, value in section.items() if value is None]:
            if path != ("models",) or name in NAMED_MODELS:
                del section[name]


def validate_config(config: dict, source: str = "config") -> dict:
    """Check a configuration dict and fill in the schema's defaults (in place, and returned); raise ConfigError
    naming every bad key and what is allowed. Objectives, samplers, sampler overrides and optional models set to
    null are removed first (how an overlay drops what config.yaml has)."""
    _drop_removed(config)
    validator = DefaultingValidator(_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_explain(e) for e in errors]
    problems += _spec_problems(config, {tuple(e.absolute_path) for e in errors})
    problems += _cone_problems(config) if not problems else []
    problems += _pool_problems(config) if not problems else []
    problems += _world_problems(config) if not problems else []
    problems += _latent_problems(config) if not problems else []
    problems += _direction_problems(config) if not problems else []
    problems += _label_target_problems(config) if not problems else []
    problems += _vocabulary_problems(config) if not problems else []
    if problems:
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    return config


def _spec_problems(config: dict, invalid: set[tuple]) -> list[str]:
    """What the engine's model-free checks find in each objective and sampler spec of `sets` (field names,
    value types and ranges), each naming its key path; specs the schema already refused are left out. Layer
    names, class names and unit ranges need the classifier: the `check_objectives` rule checks them."""
    sets = config.get("sets")
    if not isinstance(sets, dict):
        return []
    checks = {"objectives": lambda spec, where: objective_spec.check_config(spec, where, models=available_named_models(config)),
              "samplers": sampler_spec.check_config}
    problems = []
    for section, check in checks.items():
        specs = sets.get(section)
        if not isinstance(specs, dict):
            continue
        for name, spec in specs.items():
            if any(path[:3] == ("sets", section, name) for path in invalid):
                continue
            try:
                check(spec, f"sets.{section}.{name}")
            except ValueError as error:
                problems.append(str(error))
    if not problems and not any(path[:2] == ("sets", "sampler_overrides") for path in invalid):
        problems += _override_problems(sets)
    return problems


def _override_problems(sets: dict) -> list[str]:
    """Each `sets.sampler_overrides` entry must name a configured objective and sampler, leave `kind` alone, and
    give a spec the sampler accepts once merged."""
    problems = []
    for objective, overrides in sets.get("sampler_overrides", {}).items():
        where = f"sets.sampler_overrides.{objective}"
        if objective not in sets["objectives"]:
            problems.append(f"{where}: no such objective; sets.objectives has {sorted(sets['objectives'])}")
            continue
        for sampler, fields in overrides.items():
            if sampler not in sets["samplers"]:
                problems.append(f"{where}.{sampler}: no such sampler; sets.samplers has {sorted(sets['samplers'])}")
            elif fields is False:
                continue
            elif "kind" in fields:
                problems.append(f"{where}.{sampler}: 'kind' cannot be overridden (it is {sets['samplers'][sampler]['kind']!r}"
                                " in sets.samplers); add another sampler for another kind")
            else:
                try:
                    sampler_spec.check_config(objective_samplers(sets, objective)[sampler], f"{where}.{sampler}")
                except ValueError as error:
                    problems.append(str(error))
    return problems


def objective_samplers(sets: dict, objective: str) -> dict[str, dict]:
    """The sampler specs that draw `objective`'s sets, by sampler name: `sets.samplers` with the objective's
    `sets.sampler_overrides` merged in, without the samplers overridden with `false`."""
    overrides = sets.get("sampler_overrides", {}).get(objective, {})
    return {name: {**spec, **overrides.get(name, {})} for name, spec in sets["samplers"].items()
            if overrides.get(name) is not False}


def set_kinds(sets: dict) -> list[tuple[str, str]]:
    """Every (objective, sampler) pair that draws a set from each source, in config order."""
    return [(objective, sampler) for objective in sets["objectives"] for sampler in objective_samplers(sets, objective)]


def rejection_specs(sets: dict) -> list[dict]:
    """The rejection sampler specs that draw the run's sets, one per objective that a rejection sampler draws
    (`sets.sampler_overrides` applied)."""
    return [spec for objective in sets["objectives"] for spec in objective_samplers(sets, objective).values()
            if spec["kind"] == "rejection"]


def cone_samplers(sets: dict) -> dict[str, list[str]]:
    """{objective: its samplers with a cone (`cone_angle`)}, over each objective's merged sampler specs
    (`objective_samplers`); objectives drawn without a cone are left out."""
    coned = {objective: [name for name, spec in objective_samplers(sets, objective).items()
                         if sampler_spec.uses_cone(spec)] for objective in sets["objectives"]}
    return {objective: names for objective, names in coned.items() if names}


def _pool_problems(config: dict) -> list[str]:
    """A shared rejection pool must hold at least one set's members, and where a run has rejection samplers, a pool
    (shared or the reference's) must draw as one of them does, or it would be drawn, or asked for, for nothing. A run
    without rejection samplers draws no pool, whatever its kind."""
    sets, reference = config["sets"], config["reference"]
    pool, members = sets["rejection_pool"], sets["members"]
    if pool["kind"] == "shared" and pool["members"] < members:
        return [f"sets.rejection_pool.members: {pool['members']} draws cannot serve sets of sets.members = {members}; "
                f"give at least {members} (a few times the rejection sets' members is what saves time)"]
    rejection = rejection_specs(sets)
    if pool["kind"] != "none" and rejection and not any(
            sampler_spec.draws_as_pool(spec, reference["num_steps"], reference["solver"]) for spec in rejection):
        return [f"sets.rejection_pool.kind: {pool['kind']!r}, but no rejection sampler draws as the pool does (from "
                f"pure noise with reference.num_steps = {reference['num_steps']} and reference.solver = "
                f"{reference['solver']!r}, eta 0, no stop_after_accepted), so none could test its draws; match them "
                "in sets.samplers, or set kind 'none'"]
    return []


def _cone_problems(config: dict) -> list[str]:
    """A sampler with a cone needs the robust classifier that spans it (`models.robust`), and every objective it
    draws must be one the robust model can read."""
    coned = cone_samplers(config["sets"])
    if not coned:
        return []
    problems = []
    if not (config.get("models") or {}).get("robust"):
        samplers = sorted({name for names in coned.values() for name in names})
        problems.append(f"cone_angle of sampler(s) {samplers}: needs models.robust, the adversarially robust classifier "
                        "whose gradient spans the cone (`{source: world}` on the shortcut world, else a timm folder)")
    for objective, names in coned.items():
        for where, leaf in objective_spec.leaves(config["sets"]["objectives"][objective], f"sets.objectives.{objective}"):
            if leaf["kind"] not in objective_spec.TWIN_KINDS:
                problems.append(f"{where}: kind {leaf['kind']!r} cannot be read from the robust model that spans the "
                                f"cone of sampler {names[0]!r} (a layer's units, a logit vector's scale and a function "
                                f"are the explained model's own); objectives drawn with a cone must be of kinds "
                                f"{list(objective_spec.TWIN_KINDS)}: give the cone to the objectives that allow it "
                                f"(sets.sampler_overrides.<objective>.{names[0]}: {{cone_angle: 30}}) or take it from "
                                f"this one (sets.sampler_overrides.{objective}.{names[0]}: {{cone_angle: null}})")
            elif "model" in leaf:
                problems.append(f"{where}: names model {leaf['model']!r}, but the robust model that spans the cone of "
                                f"sampler {names[0]!r} is the explained classifier's twin; draw it without the cone "
                                f"(sets.sampler_overrides.{objective}.{names[0]}: {{cone_angle: null}})")
    return problems


def _world_problems(config: dict) -> list[str]:
    """`world` (and `training`, `evaluation` for its own models) must be given when the run uses the world."""
    uses = world_uses(config)
    if not uses:
        return []
    needed = ["world"] + (["training", "evaluation"] if world_models(config) else [])
    missing = [key for key in needed if key not in config]
    if missing:
        return [f"{key}: required because {', '.join(uses)}" for key in missing]
    if "regressor" in world_models(config):
        lacking = [f"{section}.{key}" for section, key in (("world", "regression"), ("training", "regressor"))
                   if key not in config[section]]
        if lacking:
            return [f"{key}: required because models.regressor.source = world (the world's regressor learns the "
                    "regression task `world.regression` with the settings `training.regressor`)" for key in lacking]
    try:
        WorldSpec.from_config(config["world"])
    except ValueError as error:
        return [str(error)]
    return []


def _latent_problems(config: dict) -> list[str]:
    """The latent UNet's `attention` flags must name each of its levels."""
    unet = config.get("training", {}).get("latent", {}).get("unet", {})
    if "attention" not in unet or len(unet["attention"]) == len(unet["block_out_channels"]):
        return []
    return [f"training.latent.unet.attention: {unet['attention']} has {len(unet['attention'])} entries; expected one "
            f"per level of training.latent.unet.block_out_channels {unet['block_out_channels']}"]


def _direction_problems(config: dict) -> list[str]:
    """`directions.split: sources` needs a folder or manifest of sources, and a world classifier's targets must be
    world shapes (a real classifier's class names are checked by the direction's job, which loads it)."""
    directions = config["directions"]
    if not directions["targets"]:
        return []
    problems = []
    if directions["split"] == SOURCES and config["sets"]["sources"]["kind"] == WORLD:
        problems.append("directions.split: `sources` means the images of sets.sources' folder or manifest, but "
                        "sets.sources.kind is world; name a world split (classifier_test, broken_test, unbiased_test)")
    if "classifier" in world_models(config):
        shapes = config["world"]["shapes"]
        problems += [f"directions.targets[{i}]: {target!r} is not a class of the world's classifier; its classes are "
                     f"world.shapes {shapes} (regression targets are not supported)"
                     for i, target in enumerate(directions["targets"]) if target not in shapes]
    return problems


def _label_target_problems(config: dict) -> list[str]:
    """A world classifier's label targets must be world shapes or their indices (a real classifier's class names
    are checked by the `check_objectives` job, which loads it)."""
    if "classifier" not in world_models(config):
        return []
    shapes = config["world"]["shapes"]
    problems = []
    for name, spec in config["sets"]["objectives"].items():
        for where, leaf in objective_spec.leaves(spec, f"sets.objectives.{name}"):
            target = objective_spec.label_target(leaf)
            for value in target if isinstance(target, list) else [target]:
                if value != "source" and value not in shapes and value not in range(len(shapes)):
                    problems.append(f"{where}.target: {value!r} is not a class of the world's classifier; give one of "
                                    f"world.shapes {shapes} or its index 0-{len(shapes) - 1}")
    return problems


def _vocabulary_problems(config: dict) -> list[str]:
    """`concepts.vocabulary` must be `world`, a built-in vocabulary or a file that exists."""
    vocabulary = config["concepts"]["vocabulary"]
    if vocabulary in (WORLD, *BUILTIN_VOCABULARIES) or Path(vocabulary).is_file():
        return []
    return [f"concepts.vocabulary: {vocabulary!r} is neither {WORLD!r}, a built-in vocabulary "
            f"({', '.join(map(repr, BUILTIN_VOCABULARIES))}) nor a file (a text file with `name` or `name | prompt` "
            "per line, its path relative to the working directory)"]


def typed_overrides(config: dict, overrides: dict) -> None:
    """Give the values of `--config` overrides their types in `config` (in place). Snakemake reads a nested
    `--config` value with YAML's base loader, which keeps every scalar a string, so `--config sets='{members: 8}'`
    would set members to '8'. Here a string takes the type YAML reads it as (a number, a boolean, null: null removes
    an objective, sampler or optional model, as in a config file) unless the schema wants a string there (a title, a
    class name, a path), and every other string stays as written."""
    _type_overrides(config, overrides, _parsed_schema())


def _type_overrides(config: dict, overrides: dict, node: dict | None) -> None:
    for key, value in overrides.items():
        if key not in config:
            continue
        child = _schema_child(node, key)
        if isinstance(value, dict) and isinstance(config[key], dict):
            _type_overrides(config[key], value, child)
        else:
            config[key] = _typed(value, child)


def _typed(value: Any, node: dict | None) -> Any:
    """A base-loader value with its strings read as YAML reads them where the schema `node` allows it."""
    if isinstance(value, dict):
        return {key: _typed(item, _schema_child(node, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item, _schema_child(node, index)) for index, item in enumerate(value)]
    if not isinstance(value, str):
        return value
    try:
        typed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    if typed is not None and not isinstance(typed, bool | int | float):
        return value
    types = _schema_types(node)
    wants_string = types is not None and "string" in types and not types & {"integer", "number", "boolean"}
    return value if wants_string and not (typed is None and "null" in types) else typed


def _schema_child(node: dict | None, key: str | int) -> dict | None:
    """The schema of item `key` (a property name or a list index) of a value whose schema is `node`; None where the
    schema does not say (an objective's fields, which the engine checks)."""
    node = _resolved(node)
    if node is None:
        return None
    if isinstance(key, int):
        return _resolved(node.get("items")) if isinstance(node.get("items"), dict) else None
    if key in node.get("properties", {}):
        return _resolved(node["properties"][key])
    extra = node.get("additionalProperties")
    return _resolved(extra) if isinstance(extra, dict) else None


def _resolved(node: dict | None) -> dict | None:
    while node is not None and "$ref" in node:
        node = _parsed_schema()["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _schema_types(node: dict | None) -> set[str] | None:
    """The JSON types the schema `node` allows (an enum's by its values), None where it does not say."""
    if node is None:
        return None
    if "type" in node:
        return {node["type"]} if isinstance(node["type"], str) else set(node["type"])
    if "enum" in node:
        return {"null" if v is None else "boolean" if isinstance(v, bool) else "number" if isinstance(v, int | float)
                else "string" for v in node["enum"]}
    return None


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error raises ConfigError naming the file, line and column."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        context = ""
        if error.context and error.context_mark and error.context_mark is not mark:
            context = f" ({error.context} at line {error.context_mark.line + 1}, column {error.context_mark.column + 1})"
        raise ConfigError(f"{where}: invalid YAML: {error.problem}{context}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None


def check_yaml(*paths: str | Path) -> None:
    """Raise ConfigError naming the file and line of a YAML syntax error in any of `paths` that exists (the
    Snakefile checks config.yaml so before Snakemake reads it: Snakemake's own message names neither)."""
    for path in paths:
        if Path(path).is_file():
            read_yaml(path)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a YAML configuration file, for use outside Snakemake (e.g. in a notebook)."""
    config = read_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of configuration keys at the top level, "
                          f"got {type(config).__name__}")
    return validate_config(config, source=str(path))
