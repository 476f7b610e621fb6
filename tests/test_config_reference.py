"""docs/configuration.md, the configuration reference, is generated from the config schema: it must be up to date,
name every key config.yaml and the presets use, and every schema key must have a description to show there."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

import pytest
import yaml

from preimage.pipeline.reference import (
    COMMAND,
    ITEMS,
    NAME,
    config_reference,
    inline,
    load_schema,
    main,
    undocumented,
)

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "configuration.md"
CONFIGS = [REPO / "config.yaml", *sorted((REPO / "presets").glob("*.yaml"))]
ENTRY = re.compile(r"^- \*\*`([^`]+)`\*\*(.*)$")


def documented(page: str) -> dict[str, str]:
    """{key path: the first line of its entry} of a rendered reference page."""
    return {match[1]: match[2] for line in page.splitlines() if (match := ENTRY.match(line))}


def config_paths(value, node: dict, path: str = "") -> list[str]:
    """The key paths a config uses, as the reference names them (<name> for map entries, [] for list items); below
    an object the schema leaves open (an objective's fields, `model_args`) only the open object's path."""
    paths = [path] if path else []
    if isinstance(value, dict):
        properties, extra = node.get("properties", {}), node.get("additionalProperties", True)
        prefix = f"{path}." if path else ""
        for key, sub in value.items():
            if key in properties:
                paths += config_paths(sub, properties[key], f"{prefix}{key}")
            elif isinstance(extra, dict):
                paths += config_paths(sub, extra, f"{prefix}{NAME}")
            else:
                assert extra is True, f"{path}: {key!r} is not a key of the schema"
    elif isinstance(value, list) and isinstance(node.get("items"), dict) and node["items"].get("properties"):
        for item in value:  # the items' keys; the item itself has an entry only where it has a description
            paths += [p for p in config_paths(item, node["items"], f"{path}{ITEMS}") if p != f"{path}{ITEMS}"]
    return paths


def test_the_reference_page_is_up_to_date() -> None:
    expected = config_reference(load_schema())
    assert PAGE.is_file(), f"{PAGE.relative_to(REPO)} is missing: generate it with `{COMMAND}`"
    current = PAGE.read_text(encoding="utf-8")
    if current != expected:
        diff = "\n".join(list(difflib.unified_diff(current.splitlines(), expected.splitlines(), "committed",
                                                   "generated now", lineterm=""))[:60])
        pytest.fail(f"{PAGE.relative_to(REPO)} is out of date with the config schema: regenerate it with "
                    f"`{COMMAND}` (from the repository root)\n{diff}")


def test_the_page_is_generated_deterministically_and_says_how() -> None:
    page = config_reference(load_schema())
    assert page == config_reference(load_schema())
    assert COMMAND in page.splitlines()[0] and "do not edit" in page.splitlines()[0]
    too_long = [line for line in page.splitlines() if len(line) > 120 and len(line.split()) > 1]
    assert not too_long, too_long


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_key_a_config_uses_is_in_the_reference(path: Path) -> None:
    with open(path) as handle:
        config = yaml.safe_load(handle)
    schema = load_schema()
    used = config_paths(config, inline(schema, schema))
    entries = documented(PAGE.read_text(encoding="utf-8"))
    assert "world.shortcuts[].strength" in used or path.name != "config.yaml"
    missing = sorted(set(used) - set(entries))
    assert not missing, f"{path.name} uses keys the reference does not list: {missing}"


def test_every_section_is_a_heading_and_every_key_an_entry() -> None:
    schema = load_schema()
    page = config_reference(schema)
    for name in schema["properties"]:
        assert f"\n## {name}\n" in page
    entries = documented(page)
    assert "sets.objectives.<name>.kind" in entries and "concepts.synonyms.<name>" in entries
    assert "required" in entries["report.title"] and "optional" in entries["concepts.real_images"]
    assert "default `2000`" in entries["concepts.real_images"]  # a default given beside a $ref
    assert "`0 < x < 1`" in entries["concepts.spurious.alpha"]
    assert "`0 < x <= 1`" in entries["training.prior.refine.learning_rate"]  # from the learning_rate definition
    assert "default `0.0`" in entries["models.prior.cfg_scale"] and "`>= 0`" in entries["models.prior.cfg_scale"]
    assert "one of `auto`, `cpu`, `cuda`" in entries["device"]
    assert "names match" in entries["sets.samplers"] and "other keys allowed" in entries["sets.samplers.<name>"]


def test_every_schema_key_has_a_description() -> None:
    assert undocumented(load_schema()) == [], \
        "give these keys a `description:` in src/preimage/pipeline/config.schema.yaml, then run " + COMMAND


def test_a_key_without_a_description_is_caught() -> None:
    schema = copy.deepcopy(load_schema())
    del schema["properties"]["report"]["properties"]["title"]["description"]
    del schema["properties"]["sets"]["properties"]["members"]["description"]  # a $ref with its own description
    del schema["definitions"]["weights_source"]["properties"]["source"]["description"]  # shared by four models
    assert undocumented(schema) == ["models.classifier.source", "models.clip.source", "models.robust.source",
                                    "models.regressor.source", "sets.members", "report.title"]


def test_variants_of_a_one_of_are_listed_each_with_its_keys() -> None:
    schema = {"type": "object", "properties": {"sets": {"type": "object", "description": "sets", "properties": {
        "samplers": {"type": "object", "description": "by name", "additionalProperties": {
            "description": "one sampler", "oneOf": [
                {"type": "object", "properties": {
                    "kind": {"const": "guided", "description": "guided"},
                    "guidance_scale": {"type": "number", "exclusiveMinimum": 0, "default": 0.08,
                                       "description": "step size"}}},
                {"type": "object", "properties": {
                    "kind": {"const": "rejection", "description": "rejection"},
                    "max_draws": {"type": "integer", "minimum": 1, "description": "draws"}}}]}}}}}}
    entries = documented(config_reference(schema))
    assert "exactly one of 2 variants" in entries["sets.samplers.<name>"]
    guidance = entries["sets.samplers.<name>.guidance_scale"]
    assert "number" in guidance and "default `0.08`" in guidance and "`> 0`" in guidance
    assert "only with `kind: guided`" in guidance
    assert "only with `kind: rejection`" in entries["sets.samplers.<name>.max_draws"]
    assert undocumented(schema) == []


def test_the_command_writes_and_checks_the_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    assert main(["--write", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == config_reference(load_schema())
    assert main(["--check", str(page)]) == 0
    page.write_text(page.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    assert main(["--check", str(page)]) == 1
