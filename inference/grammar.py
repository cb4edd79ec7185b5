"""JSON schemas checked for what a GBNF grammar can enforce, then compiled to GBNF for llama.cpp.

A schema keyword the grammar would silently drop is refused with a 400 naming it: a constraint
we accept is a constraint we enforce. Compilation uses llama-cpp-python's `SchemaConverter`
(a port of llama.cpp's `json_schema_to_grammar`), after we normalize the schema so every
keyword we let through is one the converter honours.

https://json-schema.org/understanding-json-schema/reference
https://github.com/ggml-org/llama.cpp/blob/master/grammars/README.md
"""

from __future__ import annotations

import copy
import json
from typing import Any

from llmservice.errors import InvalidRequest, UnsupportedParameter

# Keywords that only describe: accepted, nothing to enforce.
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "strict"}
)
# Keywords the grammar enforces.
ENFORCED = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "prefixItems",
        "minItems", "maxItems", "enum", "const", "anyOf", "$ref", "$defs", "definitions",
        "minLength", "maxLength", "pattern", "format", "nullable",
    }
)
SUPPORTED_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
MAX_DEPTH = 64
# Keywords that constrain only values of one type (JSON Schema ignores them for other types).
TYPE_KEYWORDS = {
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems"}),
    "object": frozenset({"properties", "required", "additionalProperties"}),
}

UNENFORCEABLE = (
    "JSON schema keyword '{keyword}' (at {where}) cannot be enforced by this server's grammar; "
    "remove it or use a schema without it"
)
INVALID_SCHEMA = "Invalid JSON schema (at {where}): {reason}"

# JSON forbids raw control characters inside strings; the converter's own `char` rule allows
# them (llama.cpp upstream has since fixed this the same way).
JSON_CHAR_RULE = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'


def schema_check(*, schema: Any, param: str) -> dict:
    """A normalized copy of `schema` whose every keyword the grammar enforces, or a 400 naming the one it can't."""
    if not isinstance(schema, dict):
        raise InvalidRequest(INVALID_SCHEMA.format(where="#", reason="a schema must be a JSON object"), param=param)
    return _normalize(copy.deepcopy(schema), "#", param, 0)


def _normalize(schema: Any, where: str, param: str, depth: int) -> dict:
    if depth > MAX_DEPTH:
        raise UnsupportedParameter(UNENFORCEABLE.format(keyword="nesting deeper than 64", where=where), param=param)
    if schema is True:
        return {}
    if not isinstance(schema, dict):
        keyword = "false" if schema is False else repr(schema)
        raise UnsupportedParameter(UNENFORCEABLE.format(keyword=keyword, where=where), param=param)

    def bad(reason: str) -> InvalidRequest:
        return InvalidRequest(INVALID_SCHEMA.format(where=where, reason=reason), param=param)

    def refuse(keyword: str) -> UnsupportedParameter:
        return UnsupportedParameter(UNENFORCEABLE.format(keyword=keyword, where=where), param=param)

    for keyword in schema:
        if keyword not in ENFORCED and keyword not in ANNOTATIONS:
            raise refuse(keyword)
    # Annotations stay: the converter ignores them, and a tool's descriptions help the model.
    if not set(schema) - ANNOTATIONS:
        return {}  # annotations only: any value (the converter wants `{}` for that)
    sub = lambda s, at: _normalize(s, f"{where}/{at}", param, depth + 1)  # noqa: E731

    for defs in ("$defs", "definitions"):
        if defs in schema:
            if not isinstance(schema[defs], dict):
                raise bad(f"'{defs}' must be an object")
            schema[defs] = {k: sub(v, f"{defs}/{k}") for k, v in schema[defs].items()}
    if schema.pop("nullable", False):
        return sub({"anyOf": [schema, {"type": "null"}]}, "nullable")

    kind = schema.get("type")
    if isinstance(kind, list):
        if not kind or any(t not in TYPES for t in kind):
            raise bad(f"unknown type in {kind}")
        rest = {k: v for k, v in schema.items() if k != "type"}
        defs = {k: rest.pop(k) for k in ("$defs", "definitions") if k in rest}
        return {**defs, "anyOf": [sub(_for_type(rest, t), f"type/{i}") for i, t in enumerate(kind)]}
    if kind is not None and kind not in TYPES:
        raise bad(f"unknown type '{kind}'")

    # The converter takes the first of these it finds and ignores everything else beside it.
    for exclusive in ("$ref", "anyOf", "const", "enum"):
        if exclusive in schema:
            others = set(schema) - {exclusive, "$defs", "definitions"} - ANNOTATIONS
            if exclusive in ("const", "enum"):
                others -= {"type"}
            if others:
                raise refuse(f"{sorted(others)[0]}' beside '{exclusive}")
            break
    if "$ref" in schema and not str(schema["$ref"]).startswith("#"):
        raise refuse(f"$ref to '{schema['$ref']}' (only local '#/...' references)")
    if "anyOf" in schema:
        if not isinstance(schema["anyOf"], list) or not schema["anyOf"]:
            raise bad("'anyOf' must be a non-empty array")
        schema["anyOf"] = [sub(s, f"anyOf/{i}") for i, s in enumerate(schema["anyOf"])]
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise bad("'enum' must be a non-empty array")

    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise bad("'properties' must be an object")
        schema["properties"] = {k: sub(v, f"properties/{k}") for k, v in properties.items()}
        missing = [r for r in schema.get("required", []) if r not in properties]
        if missing:
            raise refuse(f"required' naming '{missing[0]}', which is not in 'properties")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            schema["additionalProperties"] = sub(extra, "additionalProperties")
        elif extra is not None and not isinstance(extra, bool):
            raise bad("'additionalProperties' must be a boolean or a schema")

    if "items" in schema or "prefixItems" in schema or "minItems" in schema or "maxItems" in schema:
        if "items" in schema and "prefixItems" in schema:
            raise refuse("items' beside 'prefixItems")
        if "prefixItems" in schema:
            if "minItems" in schema or "maxItems" in schema:
                raise refuse("minItems/maxItems' beside 'prefixItems")
            schema["prefixItems"] = [sub(s, f"prefixItems/{i}") for i, s in enumerate(schema["prefixItems"])]
        else:
            items = schema.get("items", {})
            if isinstance(items, list):
                raise refuse("items' as an array (use 'prefixItems')")
            schema["items"] = sub(items, "items")
            lo, hi = schema.get("minItems", 0), schema.get("maxItems")
            if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
                raise bad("'minItems'/'maxItems' must be integers with 0 <= minItems <= maxItems")

    string_keywords = [k for k in ("pattern", "format", "minLength", "maxLength") if k in schema]
    if "pattern" in schema and len(string_keywords) > 1:
        raise refuse(f"{string_keywords[1]}' beside 'pattern")
    if "format" in schema:
        if schema["format"] not in SUPPORTED_FORMATS:
            raise refuse(f"format: {schema['format']}")
        if len(string_keywords) > 1:
            raise refuse(f"{string_keywords[1]}' beside 'format")
    if "minLength" in schema or "maxLength" in schema:
        if schema.get("type") != "string":
            raise refuse("minLength/maxLength' without 'type': 'string")
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if not isinstance(lo, int) or lo < 0 or (hi is not None and (not isinstance(hi, int) or hi < lo)):
            raise bad("'minLength'/'maxLength' must be integers with 0 <= minLength <= maxLength")
    return schema


def _for_type(schema: dict, kind: str) -> dict:
    """`schema` restricted to `kind`, without the keywords that only constrain other types."""
    foreign = set().union(*(keys for t, keys in TYPE_KEYWORDS.items() if t != kind))
    return {**{k: v for k, v in schema.items() if k not in foreign}, "type": kind}


# --- GBNF ------------------------------------------------------------------------------------
def _converter():
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _rules(converter) -> str:
    if "char" in converter._rules:
        converter._rules["char"] = JSON_CHAR_RULE
    return converter.format_grammar()


def _visit(converter, schema: dict, name: str, param: str) -> str:
    if "$ref" in schema and len(schema) > 1:
        # The converter doesn't look inside a node that has a `$ref`, so `$defs` beside one
        # would keep unresolved references: move the `$ref` one level down.
        schema = {**{k: v for k, v in schema.items() if k != "$ref"}, "anyOf": [{"$ref": schema["$ref"]}]}
    try:
        resolved = converter.resolve_refs(schema, "input")
        return converter.visit(resolved, name)
    except (AssertionError, KeyError, ValueError, TypeError, RecursionError) as exc:
        # A pattern or reference the converter can't turn into a grammar.
        raise UnsupportedParameter(
            UNENFORCEABLE.format(keyword=f"{type(exc).__name__}: {exc}", where="#"), param=param
        ) from exc


def json_gbnf(schema: dict | None, *, param: str = "response_format") -> str:
    """A grammar for one JSON value valid against `schema` (a checked one); None: any JSON object."""
    converter = _converter()
    root = _visit(converter, schema if schema is not None else {"type": "object"}, "", param)
    rules = converter._rules
    body = rules[root]
    while body in rules:  # `root ::= object`: follow the alias to the real rule
        body = rules[body]
    if body.endswith(" space"):  # no whitespace after the value: clean output
        rules[root] = body[: -len(" space")]
    return _rules(converter)


def gbnf_with(schema: dict, name: str, extra_rules: dict[str, str], *, param: str) -> str:
    """A grammar whose `root` is given in `extra_rules` and may use `name` for values of `schema`."""
    converter = _converter()
    rule = _visit(converter, schema, name, param)
    if rule != name:  # pragma: no cover - the converter renames only on a clash
        raise RuntimeError(f"grammar rule {name!r} became {rule!r}")
    converter._rules.update(extra_rules)
    return _rules(converter)


def gbnf_literal(text: str) -> str:
    return json.dumps(text)
