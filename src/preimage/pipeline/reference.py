"""The configuration reference (docs/configuration.md), rendered from the config schema.

Every key of `config.schema.yaml` becomes one entry, under the section of its top-level key and in schema order:
its dotted path (``<name>`` for a key you name yourself, ``[]`` for a list's items), its type, whether it is
required, its default, the values it allows and its description. ``oneOf`` / ``anyOf`` alternatives are listed
variant by variant. The page is regenerated with

    python -m preimage.pipeline.reference --write

and tests/test_config_reference.py fails when the committed page differs from what this module renders now.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preimage.pipeline.config import _schema

OUTPUT = Path("docs/configuration.md")
COMMAND = "python -m preimage.pipeline.reference --write"
SCHEMA_PATH = "src/preimage/pipeline/config.schema.yaml"
WIDTH = 120
NAME = "<name>"  # the path part of a map's entries (additionalProperties, patternProperties)
ITEMS = "[]"  # the path part of a list's items
INDENT = "  "


@dataclass(frozen=True)
class Entry:
    """One key of the schema: its dotted path, its schema node ($ref resolved) and how it may be given."""

    path: str
    node: dict
    required: bool | None  # None: a map entry or a list item, given as many times as wanted
    variant: str | None = None  # the oneOf / anyOf alternative the key belongs to


def load_schema() -> dict:
    """The pipeline's configuration schema, as validate_config reads it."""
    return _schema()


_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")  # name -> schema
_SCHEMA_LISTS = ("oneOf", "anyOf", "allOf")  # [schema, ...]
_SCHEMAS = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else", "contains")


def inline(node: Any, schema: dict, depth: int = 0) -> Any:
    """A schema node with every local `$ref` in it replaced by the definition it names (a node's own keys win
    over the definition's, as `real_images: {$ref: ..., default: 2000}` expects)."""
    if not isinstance(node, dict):
        return node
    if depth > 50:
        raise ValueError("the schema's $refs are recursive; the reference cannot list such a schema")
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, got {ref!r}")
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    out = dict(node)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            out[key] = {name: inline(sub, schema, depth + 1) for name, sub in node[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            out[key] = [inline(sub, schema, depth + 1) for sub in node[key]]
    for key in _SCHEMAS:
        if isinstance(node.get(key), dict):
            out[key] = inline(node[key], schema, depth + 1)
    return out


def entries(schema: dict) -> Iterator[Entry]:
    """Every key of the schema, depth first in schema order (each key before its children)."""
    yield from _children(inline({key: value for key, value in schema.items() if key != "definitions"}, schema),
                         "", None)


def _walk(node: dict, path: str, required: bool | None, variant: str | None) -> Iterator[Entry]:
    yield Entry(path, node, required, variant)
    yield from _children(node, path, variant)


def _children(node: dict, path: str, variant: str | None) -> Iterator[Entry]:
    prefix = f"{path}." if path else ""
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{prefix}{name}", name in required, variant)
    for sub in node.get("patternProperties", {}).values():
        yield from _walk(sub, f"{prefix}{NAME}", None, variant)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, f"{prefix}{NAME}", None, variant)
    items = node.get("items")
    if isinstance(items, dict) and _has_keys(items):
        if str(items.get("description", "")).strip():  # else the list's own entry says all there is
            yield Entry(f"{path}{ITEMS}", items, None, variant)
        yield from _children(items, f"{path}{ITEMS}", variant)
    for number, sub in enumerate(_alternatives(node), start=1):
        yield from _children(sub, path, _variant_label(sub, number))


def _alternatives(node: dict) -> list[dict]:
    return [*node.get("oneOf", []), *node.get("anyOf", [])]


def _has_keys(node: dict) -> bool:
    """Whether a node has keys of its own to list (an object, or alternatives that are objects)."""
    if node.get("properties") or node.get("patternProperties") or isinstance(node.get("additionalProperties"), dict):
        return True
    return any(_has_keys(sub) for sub in _alternatives(node))


def _variant_label(node: dict, number: int) -> str:
    """An alternative's name: its title, else the value its one fixed key must take (e.g. `kind: guided`)."""
    if "title" in node:
        return str(node["title"])
    for name, sub in node.get("properties", {}).items():
        if "const" in sub:
            return f"{name}: {_value(sub['const'])}"
        if len(sub.get("enum", [])) == 1:
            return f"{name}: {_value(sub['enum'][0])}"
    return f"variant {number}"


def undocumented(schema: dict) -> list[str]:
    """The paths of keys without a description (list items may go without one: their list has one)."""
    return [entry.path for entry in entries(schema)
            if not entry.path.endswith(ITEMS) and not str(entry.node.get("description", "")).strip()]


# ---------------------------------------------------------------------------------------------------- rendering

def _value(value: Any) -> str:
    """A value as it is written in config.yaml (YAML flow style)."""
    if isinstance(value, str):
        return value if value and value.strip() == value and not _yaml_special(value) else json.dumps(value)
    return json.dumps(value)


def _yaml_special(text: str) -> bool:
    return (text.lower() in {"null", "~", "true", "false", "yes", "no", "on", "off"}
            or bool(re.fullmatch(r"[-+.\d][\d._eE+-]*", text)) or text[0] in "{[&*!|>'\"%@`#,?:-")


def _code(value: Any) -> str:
    text = _value(value)
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _type_name(node: dict) -> str:
    kinds = node.get("type")
    if kinds is None and "enum" in node:
        kinds = list(dict.fromkeys(_json_type(value) for value in node["enum"]))
    if kinds is None and "const" in node:
        kinds = _json_type(node["const"])
    if kinds is None:
        return "object" if _has_keys(node) or _alternatives(node) else "any"
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    names = []
    for kind in kinds:
        if kind == "array" and isinstance(node.get("items"), dict):
            names.append(f"list of {_type_name(node['items'])}")
        else:
            names.append("list" if kind == "array" else kind)
    return " or ".join(names)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "any")


def _range(node: dict) -> str | None:
    """`low <= x < high`, `>= low` or `< high` from the bounds of a number, or None when it has none."""
    low = high = None
    if "minimum" in node or "exclusiveMinimum" in node:
        low = ("<=", node["minimum"]) if "minimum" in node else ("<", node["exclusiveMinimum"])
    if "maximum" in node or "exclusiveMaximum" in node:
        high = ("<=", node["maximum"]) if "maximum" in node else ("<", node["exclusiveMaximum"])
    if low and high:
        return f"`{_value(low[1])} {low[0]} x {high[0]} {_value(high[1])}`"
    if low:
        return f"`{'>=' if low[0] == '<=' else '>'} {_value(low[1])}`"
    if high:
        return f"`{high[0]} {_value(high[1])}`"
    return None


def _constraints(node: dict) -> list[str]:
    """What a value must be, beyond its type: allowed values, range, lengths, patterns."""
    found = []
    if "enum" in node:
        found.append("one of " + ", ".join(_code(value) for value in node["enum"]))
    if "const" in node:
        found.append(f"exactly {_code(node['const'])}")
    if (bounds := _range(node)) is not None:
        found.append(bounds)
    if "multipleOf" in node:
        found.append(f"a multiple of {_value(node['multipleOf'])}")
    if node.get("minLength") == 1 and "maxLength" not in node:
        found.append("not empty")
    else:
        found += [f"at least {node['minLength']} characters"] if "minLength" in node else []
        found += [f"at most {node['maxLength']} characters"] if "maxLength" in node else []
    if "pattern" in node:
        found.append(f"matches {_code(node['pattern'])}")
    if "minItems" in node:
        found.append(f"at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}")
    if "maxItems" in node:
        found.append(f"at most {node['maxItems']} items")
    if node.get("uniqueItems"):
        found.append("no item twice")
    items = node.get("items")
    if isinstance(items, dict) and not _has_keys(items) and (each := _constraints(items)):
        found.append("each item " + ", ".join(each))
    if "minProperties" in node:
        found.append(f"at least {node['minProperties']} entr{'ies' if node['minProperties'] != 1 else 'y'}")
    if "maxProperties" in node:
        found.append(f"at most {node['maxProperties']} entries")
    names = node.get("propertyNames")
    if isinstance(names, dict) and "pattern" in names:
        rule = str(names.get("description", "")).strip()
        found.append(f"names match {_code(names['pattern'])}" + (f": {_escape(rule)}" if rule else ""))
    if _is_open(node):
        found.append("any keys" if not node.get("properties") else "other keys allowed")
    if _alternatives(node):
        kind = "exactly one" if node.get("oneOf") else "at least one"
        found.append(f"{kind} of {len(_alternatives(node))} variants")
    return found


def _is_open(node: dict) -> bool:
    """An object whose keys the schema leaves free (no `additionalProperties: false`, no map schema)."""
    kinds = node.get("type")
    is_object = kinds == "object" or (isinstance(kinds, list) and "object" in kinds) or "properties" in node
    return (is_object and node.get("additionalProperties", True) is True and not node.get("patternProperties")
            and not _alternatives(node))


def _escape(text: str) -> str:
    """Markdown text with `<` outside code spans escaped, so a placeholder like <class> is not read as HTML."""
    parts = text.split("`")
    return "`".join(part.replace("<", "\\<") if i % 2 == 0 else part for i, part in enumerate(parts))


def _wrap(text: str, first: str, rest: str) -> list[str]:
    """Greedy word wrap to WIDTH that never starts a line with a word Markdown would read as a new block."""
    words = _words(text)
    lines: list[list[str]] = [[]]
    length = len(first)
    for word in words:
        line = lines[-1]
        if line and length + 1 + len(word) > WIDTH:
            carry = []
            while _starts_block(word if not carry else carry[0]) and len(line) > 1:
                carry.insert(0, line.pop())
            lines.append([*carry, word])
            length = len(rest) + len(" ".join(lines[-1]))
        else:
            line.append(word)
            length += len(word) + (1 if len(line) > 1 else 0)
    return [(first if i == 0 else rest) + " ".join(line) for i, line in enumerate(lines)]


def _words(text: str) -> list[str]:
    """The words of `text`, a code span with spaces kept as one word (so it is never split across lines)."""
    words: list[str] = []
    for word in text.split():
        if words and words[-1].count("`") % 2 == 1:
            words[-1] += " " + word
        else:
            words.append(word)
    return words


def _starts_block(word: str) -> bool:
    """Whether a line starting with `word` would begin a list, quote, heading or table row (or a lone ·)."""
    return bool(re.match(r"([-+*>#=|·]|\d+[.)])", word))


def _entry(entry: Entry) -> list[str]:
    node = entry.node
    head = [f"**`{entry.path}`**", _type_name(node)]
    if entry.required is not None:
        head.append("required" if entry.required else "optional")
    if "default" in node:
        head.append(f"default {_code(node['default'])}")
    head += _constraints(node)
    if entry.variant:
        head.append(f"only with `{entry.variant}`")
    lines = _wrap(" · ".join(head), "- ", INDENT)
    description = str(node.get("description", "")).strip()
    if description:
        lines += ["", *_wrap(_escape(description), INDENT, INDENT)]
    return lines


def config_reference(schema: dict) -> str:
    """The Markdown reference page of the configuration `schema`: one section per top-level key."""
    top = list(schema.get("properties", {}))
    intro = [(
        f"{str(schema.get('description', 'The configuration')).strip()}: every key, generated from `{SCHEMA_PATH}` "
        f"by `{COMMAND}`; edit the schema, not this page (tests/test_config_reference.py fails when the two "
        "differ). The schema checks config.yaml, with a preset or `--config` overrides, on every run: an unknown "
        "key or a bad value stops the run with a message naming the key and what is allowed."
    )]
    legend = [
        ("**required** keys must be given whenever their section is; **optional** ones may be left out. A key "
         "with a **default** is filled in with it when left out (`preimage.pipeline.config.validate_config`), so "
         "config.yaml, the presets and a partial dict from Python all mean the same run."),
        "`<name>` stands for a name you choose (an objective's, a sampler's, a class's) and `[]` for each item of a list.",
        "Ranges are written `0 <= x < 1`; `>= 1` means at least 1.",
    ]
    lines = [f"<!-- Generated by `{COMMAND}` from the config schema; do not edit. -->", "",
             "# Configuration reference", ""]
    for paragraph in intro:
        lines += [*_wrap(_escape(paragraph), "", ""), ""]
    for item in legend:
        lines += _wrap(_escape(item), "- ", INDENT)
    lines += ["", *_wrap("Sections: " + ", ".join(f"[{name}](#{_anchor(name)})" for name in top) + ".", "", ""), ""]
    sections: dict[str, list[Entry]] = {name: [] for name in top}
    for entry in entries(schema):
        sections[re.split(r"[.\[]", entry.path, maxsplit=1)[0]].append(entry)
    for name, section in sections.items():
        lines += [f"## {name}", ""]
        for entry in section:
            lines += [*_entry(entry), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^a-z0-9_ -]", "", heading.lower()).replace(" ", "-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", nargs="?", const=OUTPUT, type=Path, metavar="PATH",
                        help=f"write the page to PATH (default: {OUTPUT}) instead of printing it")
    action.add_argument("--check", nargs="?", const=OUTPUT, type=Path, metavar="PATH",
                        help=f"exit 1 when PATH (default: {OUTPUT}) differs from the page rendered now")
    args = parser.parse_args(argv)
    schema = load_schema()
    for path in undocumented(schema):
        print(f"warning: {path} has no description in {SCHEMA_PATH}", file=sys.stderr)
    page = config_reference(schema)
    if args.write is not None:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(page, encoding="utf-8", newline="\n")
        print(f"wrote {args.write}", file=sys.stderr)
    elif args.check is not None:
        current = args.check.read_text(encoding="utf-8") if args.check.is_file() else None
        if current != page:
            print(f"{args.check} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
    else:
        if hasattr(sys.stdout, "buffer"):
            sys.stdout.buffer.write(page.encode("utf-8"))  # UTF-8 whatever the locale
        else:
            sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
