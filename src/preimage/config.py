"""Load and validate the pipeline configuration against its JSON schema (src/preimage/config.schema.yaml)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from preimage.world.generator import WorldSpec


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


def _schema() -> dict:
    return yaml.safe_load(resources.files("preimage").joinpath("config.schema.yaml").read_text())


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
    return f"{where}: {error.message}"


def validate_config(config: dict, source: str = "config") -> dict:
    """Check a configuration dict; raise ConfigError naming every bad key and what is allowed."""
    validator = jsonschema.Draft7Validator(_schema())
    problems = [_explain(e) for e in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))]
    if problems:
        raise ConfigError(f"{source} is invalid:\n  " + "\n  ".join(problems))
    try:
        WorldSpec.from_config(config["world"])
    except ValueError as error:
        raise ConfigError(f"{source} is invalid:\n  {error}") from None
    return config


def load_config(path: str | Path) -> dict:
    """Read and validate a YAML configuration file, for use outside Snakemake (e.g. in a notebook)."""
    with open(path) as handle:
        return validate_config(yaml.safe_load(handle), source=str(path))


def prior_first_stage(prior: dict) -> dict:
    """The prior's training settings without its `refine` stage: what the first stage trains (and is named) by."""
    return {key: value for key, value in prior.items() if key != "refine"}
