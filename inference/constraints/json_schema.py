"""JSON schemas for llguidance: OpenAI's `strict` semantics, and where a keyword was relaxed.

llguidance decides what it can enforce (https://github.com/guidance-ai/llguidance/blob/main/docs/json_schema.md):
with `strict` we compile in its exact mode, where a keyword it can't enforce is an error, and
refuse the schema naming that keyword and its JSON path; without `strict` we compile in its
lenient mode (overlapping `oneOf` becomes `anyOf`, unsupported keywords are dropped) and report
each dropped keyword from its warnings. Its messages name the keyword but not where it is, so
we find its places in the schema ourselves.

https://platform.openai.com/docs/guides/structured-outputs#supported-schemas
https://json-schema.org/draft/2020-12/json-schema-core#name-a-vocabulary-for-applying-s
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import quote

from llguidance import LLMatcher

from llmservice.errors import InvalidRequest, UnsupportedParameter

# How JSON is written: compact (fewer tokens, no runaway whitespace), as llguidance's defaults.
COMPACT = {"whitespace_flexible": False}
# Tool arguments are written the way chat templates render them back (`tojson`): ", " and ": ".
TEMPLATE_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
MAX_DEPTH = 100  # JSON nesting levels; llguidance's JSON reader stops at 128, our wrappers add a few

# JSON Schema's places where a subschema sits: (keyword, how its value holds them).
_SCHEMA_VALUED = ("items", "additionalItems", "additionalProperties", "not", "if", "then", "else", "contains",
                  "propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")

UNENFORCEABLE = (
    "JSON schema keyword '{keyword}' at {where} cannot be enforced ({reason}); remove it, or send the "
    "schema without strict: true to have it relaxed (the response then names it in X-Schema-Relaxed)."
)
REPEATED_KEYS = "the keys its object may take beyond 'properties' could repeat, and a JSON parser keeps one of each"
INVALID_SCHEMA = "Invalid JSON schema: {reason}"
TOO_DEEP = "Invalid JSON schema: nested deeper than {limit} levels (at {where})."
NOT_AN_OBJECT = "Invalid JSON schema: a schema must be a JSON object."

_UNIMPLEMENTED = re.compile(r"Unimplemented keys: (\[[^\]]*\])")
_FORMAT = re.compile(r"Unknown format: (\S+)")


@dataclass(frozen=True, slots=True)
class Relaxation:
    """A keyword the schema has that the output is not held to (non-strict schemas only)."""

    keyword: str
    path: str  # a JSON pointer as a URI fragment, "#/properties/tags", maybe after the param

    def __str__(self) -> str:
        return f"{self.keyword} at {self.path}"


@dataclass(frozen=True, slots=True)
class CheckedSchema:
    """A schema ready for llguidance (options embedded) and what it relaxes."""

    schema: dict
    relaxed: tuple[Relaxation, ...]


def prepare_schema(schema: Any, *, strict: bool, param: str, style: dict = COMPACT, where: str = "") -> dict:
    """A copy of `schema` for llguidance: older dialects rewritten, our compile options set.
    With `strict`, a keyword only we know to be unenforceable is refused here (`open_minimums`)."""
    if not isinstance(schema, dict):
        raise InvalidRequest(NOT_AN_OBJECT, param=param)
    prepared = _normalized(schema, param)
    if strict and (paths := _open_minimums(prepared)):
        where_all = ", ".join(where + p for p in paths)
        raise UnsupportedParameter(UNENFORCEABLE.format(keyword="minProperties", where=where_all, reason=REPEATED_KEYS), param=param)
    prepared["x-guidance"] = {**style, "lenient": not strict}  # ours only: a client's could undo them
    return prepared


def relaxations(schema: dict, warnings: list[str], where: str = "") -> tuple[Relaxation, ...]:
    """What llguidance's warnings (lenient mode) say it dropped, at each place in `schema`, and the
    `minProperties` it can only count by the keys written (`open_minimums`)."""
    found = [r for message in warnings for r in _relaxations(schema, message, where)]
    found += [Relaxation("minProperties", where + path) for path in open_minimums(schema)]
    return tuple(dict.fromkeys(found))


def open_minimums(schema: dict) -> list[str]:
    """Where `minProperties` can't be held: llguidance counts the keys it writes, and an object
    open to keys beyond its `properties` (patternProperties, additionalProperties) may write one
    twice ({"x_a":1,"x_a":2}), which a JSON parser reads as one. Distinct `required` keys and a
    minimum of 1 still hold."""
    return _open_minimums(_normalized(schema, ""))


def _open_minimums(normalized: dict) -> list[str]:
    places = []
    for node, path in _subschemas_with_paths(normalized):
        minimum = node.get("minProperties")
        if not isinstance(minimum, int) or isinstance(minimum, bool):
            continue
        required = node.get("required")
        named = len(set(required)) if isinstance(required, list) and all(isinstance(r, str) for r in required) else 0
        opened = bool(node.get("patternProperties")) or node.get("additionalProperties", True) is not False
        if opened and minimum > max(1, named):
            places.append(path)
    return places


def compile_error(schema: dict, message: str, *, param: str, where: str = "") -> InvalidRequest:
    """The client's error for a message llguidance gave while building this schema's grammar."""
    return _refusal(schema, message, param, where)


def schema_check(schema: Any, *, strict: bool, param: str, style: dict = COMPACT, where: str = "") -> CheckedSchema:
    """`schema` prepared and validated on its own (no tokenizer), with what it relaxes.

    `where` prefixes reported paths (a tool's param, so a client knows which schema is meant).
    """
    prepared = prepare_schema(schema, strict=strict, param=param, style=style, where=where)
    try:
        grammar = LLMatcher.grammar_from_json_schema(prepared)
    except ValueError as exc:
        raise InvalidRequest(INVALID_SCHEMA.format(reason=_first_line(str(exc))), param=param) from None
    failed, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        raise _refusal(schema, messages[0], param, where)
    return CheckedSchema(prepared, relaxations(schema, messages, where))


# --- normalizing ---------------------------------------------------------------------------------
def _normalized(schema: dict, param: str) -> dict:
    """A copy for llguidance. OpenAPI's `nullable: true`, which it would ignore, is rewritten so
    it is enforced. An object with `properties` and no `additionalProperties` gets no others, as llama.cpp's
    converter does: every answer stays valid, and a small model can't wander off into invented
    keys (not done when the schema has `allOf`, whose branches are intersected).
    Walked with an explicit stack: a deep schema must not hit Python's recursion limit."""
    root: dict = {}
    stack: list[tuple[Any, Any, Any, int, str]] = [(schema, root, None, 0, "#")]
    while stack:
        node, parent, key, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            shown = where if len(where) <= 80 else where[:80] + "..."
            raise InvalidRequest(TOO_DEEP.format(limit=MAX_DEPTH, where=shown), param=param)
        if isinstance(node, dict):
            copy: Any = dict.fromkeys(node)  # keys in the client's order: it is the output's order
            for k, v in node.items():
                stack.append((v, copy, k, depth + 1, f"{where}/{_segment(k)}"))
        elif isinstance(node, list):
            copy = [None] * len(node)
            for i, v in enumerate(node):
                stack.append((v, copy, i, depth + 1, f"{where}/{i}"))
        else:
            copy = node
        if key is None:
            root = copy
        else:
            parent[key] = copy
    nodes = list(_subschemas(root))
    close = not any("allOf" in node for node in nodes)
    for node in nodes:
        _rewrite(node, close)
    return root


def _rewrite(node: dict, close: bool) -> None:
    if close and "properties" in node and "additionalProperties" not in node and "patternProperties" not in node:
        node["additionalProperties"] = False
    if node.get("nullable") is True:
        del node["nullable"]
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list):
            node["type"] = [*kind, "null"]
        elif "enum" in node and isinstance(node["enum"], list):
            node["enum"] = [*node["enum"], None]
        else:
            inner = {k: node.pop(k) for k in list(node) if k not in ("$defs", "definitions")}
            node["anyOf"] = [inner, {"type": "null"}]


# --- locating keywords -----------------------------------------------------------------------------
def _subschemas(schema: dict) -> Iterator[dict]:
    """Every schema object inside `schema` (itself included), not the values of other keywords."""
    for node, _ in _subschemas_with_paths(schema):
        yield node


def _subschemas_with_paths(schema: dict) -> Iterator[tuple[dict, str]]:
    stack = [(schema, "#")]
    while stack:
        node, path = stack.pop()
        yield node, path
        children = []
        for keyword in _SCHEMA_VALUED:
            if isinstance(node.get(keyword), dict):
                children.append((node[keyword], f"{path}/{keyword}"))
        for keyword in _SCHEMA_LISTS:
            if isinstance(node.get(keyword), list):
                children.extend((s, f"{path}/{keyword}/{i}") for i, s in enumerate(node[keyword]) if isinstance(s, dict))
        for keyword in _SCHEMA_MAPS:
            if isinstance(node.get(keyword), dict):
                children.extend(
                    (s, f"{path}/{keyword}/{_segment(k)}") for k, s in node[keyword].items() if isinstance(s, dict)
                )
        stack.extend(reversed(children))


def _segment(key: Any) -> str:
    """A JSON pointer segment, URI-encoded so a header can carry it (RFC 6901 section 6)."""
    text = str(key).replace("~", "~0").replace("/", "~1")
    return quote(text, safe="~!$&'()*+;=:@-._")


def _keywords(message: str) -> list[str]:
    """The schema keywords an llguidance message is about ([] when it names none)."""
    found = _UNIMPLEMENTED.search(message)
    if found:
        try:
            return [str(k) for k in json.loads(found.group(1))]
        except ValueError:
            return []
    if _FORMAT.search(message):
        return ["format"]
    if "oneOf" in message:
        return ["oneOf"]
    if "min/maxProperties" in message:
        return ["minProperties", "maxProperties"]
    return []


def _places(schema: dict, keyword: str, message: str) -> list[str]:
    fmt = _FORMAT.search(message)
    places = []
    for node, path in _subschemas_with_paths(schema):
        if keyword in node and (keyword != "format" or fmt is None or str(node["format"]) == fmt.group(1)):
            places.append(path)
    return places


def _relaxations(schema: dict, message: str, where: str) -> list[Relaxation]:
    return [
        Relaxation(keyword, where + path)
        for keyword in _keywords(message)
        for path in _places(schema, keyword, message) or ["#"]
    ]


def _refusal(schema: dict, message: str, param: str, where: str) -> InvalidRequest:
    reason = _first_line(message)
    keywords = [k for k in _keywords(message) if _places(schema, k, message)]
    if not keywords:
        return InvalidRequest(INVALID_SCHEMA.format(reason=reason), param=param)
    keyword = keywords[0]
    paths = ", ".join(where + p for p in _places(schema, keyword, message))
    return UnsupportedParameter(UNENFORCEABLE.format(keyword=keyword, where=paths, reason=reason), param=param)


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "rejected"
    line = re.sub(r"^at \d+\(\d+\): ", "", line)  # a position inside our own generated grammar
    line = line.removeprefix("failed to compile JSON schema: ")
    return line[:300]
