"""JSON schema checks (what the grammar can enforce) and the GBNF they compile to."""

from __future__ import annotations

import pytest

from inference.grammar import json_gbnf, schema_check
from llmservice.errors import InvalidRequest, UnsupportedParameter


def check(schema):
    return schema_check(schema=schema, param="response_format")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5}}, "required": ["a"], "additionalProperties": False},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        {"type": ["string", "null"], "maxLength": 4},
        {"type": "string", "nullable": True},
        {"$defs": {"X": {"type": "boolean"}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/X"}}},
        {"enum": ["a", 1, None]},
        {"const": {"k": [1, 2]}},
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[a-z]{2,4}$"},
        {"prefixItems": [{"type": "string"}, {"type": "number"}]},
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {
            "$defs": {"Node": {"type": "object", "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2}}, "required": ["v", "kids"]}},
            "$ref": "#/$defs/Node",
        },
        {"type": "object", "properties": {"anything": {"title": "Anything", "description": "pydantic's Any"}}},
        {"title": "T", "description": "annotations are fine", "type": "object", "properties": {}, "examples": [{}]},
    ],
)
def test_supported_schemas_compile(schema):
    grammar = json_gbnf(check(schema))
    assert "root ::=" in grammar


@pytest.mark.parametrize(
    "schema, feature",
    [
        ({"type": "integer", "minimum": 1}, "minimum"),
        ({"type": "number", "exclusiveMaximum": 1}, "exclusiveMaximum"),
        ({"type": "number", "multipleOf": 2}, "multipleOf"),
        ({"oneOf": [{"type": "string"}]}, "oneOf"),
        ({"allOf": [{"type": "string"}]}, "allOf"),
        ({"not": {"type": "string"}}, "not"),
        ({"if": {"type": "string"}, "then": {}}, "if"),
        ({"type": "object", "patternProperties": {}}, "patternProperties"),
        ({"type": "object", "minProperties": 1}, "minProperties"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "array", "contains": {}}, "contains"),
        ({"type": "string", "format": "email"}, "format: email"),
        ({"type": "string", "pattern": "^a$", "maxLength": 3}, "maxLength"),
        ({"type": "object", "properties": {"a": {}}, "anyOf": [{}]}, "properties"),
        ({"$ref": "https://example.com/schema.json"}, "$ref to"),
        ({"type": "object", "properties": {"a": False}}, "false"),
        ({"type": "object", "properties": {}, "required": ["b"]}, "required"),
        ({"type": "object", "properties": {"deep": {"type": "object", "properties": {"n": {"type": "integer", "maximum": 9}}}}}, "maximum"),
    ],
)
def test_unenforceable_features_are_refused_by_name(schema, feature):
    with pytest.raises(UnsupportedParameter) as caught:
        check(schema)
    assert f"'{feature}" in caught.value.message
    assert caught.value.param == "response_format"


@pytest.mark.parametrize(
    "schema",
    [[], {"type": "strin"}, {"type": "array", "minItems": 3, "maxItems": 1}, {"enum": []}, {"type": "string", "maxLength": -1}],
)
def test_invalid_schemas_are_invalid_requests(schema):
    with pytest.raises(InvalidRequest):
        check(schema)


def test_the_check_does_not_modify_the_callers_schema():
    schema = {"type": "object", "properties": {"a": {"type": "string", "nullable": True, "description": "x"}}}
    original = repr(schema)
    check(schema)
    assert repr(schema) == original


def test_json_strings_cannot_hold_raw_control_characters():
    grammar = json_gbnf(check({"type": "string"}))
    assert r"\x00-\x1F" in grammar


def test_root_value_has_no_trailing_whitespace():
    root = next(line for line in json_gbnf(None).splitlines() if line.startswith("root ::="))
    assert not root.endswith("space")
