"""Structured output through the official `openai` client against a real server and SmolLM2.

A 135M model chooses poorly: these tests check structure and schema validity (formats included),
never content. Every field is bounded: a tiny model otherwise writes digits until max_tokens.
"""

from __future__ import annotations

import json
from typing import Literal, Optional

import httpx
import jsonschema
import pytest
from openai import OpenAI
from pydantic import BaseModel, EmailStr, Field, HttpUrl

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
RELAXED = "x-schema-relaxed"


def valid(instance, schema) -> None:
    """jsonschema validation with the format checkers on (email, uri, date-time, ...)."""
    jsonschema.validate(instance, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def obj(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False, **extra}


# Every keyword we enforce, in schemas whose values a small model would not pick by itself.
KEYWORD_SCHEMAS = {
    "numbers": obj({
        "year": {"type": "integer", "minimum": 1900, "maximum": 1950},
        "celsius": {"type": "number", "exclusiveMinimum": -40, "exclusiveMaximum": -10},
        "lucky": {"type": "integer", "multipleOf": 7, "minimum": 10, "maximum": 100},
    }),
    "strings": obj({
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "word": {"type": "string", "minLength": 5, "maxLength": 8},
        "email": {"type": "string", "format": "email", "maxLength": 40},
        "site": {"type": "string", "format": "uri", "maxLength": 40},
        "host": {"type": "string", "format": "hostname", "maxLength": 30},
    }),
    "dates and ids": obj({
        "day": {"type": "string", "format": "date"},
        "when": {"type": "string", "format": "date-time"},
        "at": {"type": "string", "format": "time"},
        "takes": {"type": "string", "format": "duration", "maxLength": 12},
        "id": {"type": "string", "format": "uuid"},
        "ip4": {"type": "string", "format": "ipv4"},
        "ip6": {"type": "string", "format": "ipv6", "maxLength": 39},
    }),
    "arrays": obj({
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 3, "maxItems": 4},
        "pair": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "boolean"}], "items": False},
    }),
    "objects": obj({
        "scores": {
            "type": "object", "patternProperties": {"^x_[a-z]{1,5}$": {"type": "integer", "minimum": 0, "maximum": 9}},
            "additionalProperties": False, "minProperties": 1, "maxProperties": 3,  # 2: refused, keys may repeat
        },
        "address": {"$ref": "#/$defs/Address"},
    }, **{"$defs": {"Address": obj({"city": {"type": "string", "maxLength": 20}, "zip": {"type": ["string", "null"], "maxLength": 5}})}}),
    "combinators": obj({
        "pet": {
            "oneOf": [
                obj({"kind": {"const": "cat"}, "lives": {"type": "integer", "minimum": 1, "maximum": 9}}),
                obj({"kind": {"const": "dog"}, "good": {"type": "boolean"}}),
            ],
            "discriminator": {"propertyName": "kind"},
        },
        "id": {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 999}, {"type": "null"}]},
        "level": {"allOf": [{"type": "integer"}, {"minimum": 3}, {"maximum": 5}]},
        "color": {"enum": ["mauve", "teal"]},
        "answer": {"const": 42},
        "nick": {"type": "string", "maxLength": 10, "nullable": True},
    }),
}


class Landmark(BaseModel):
    name: str = Field(max_length=30)
    kind: Literal["museum", "tower", "park", "other"]


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population: int = Field(ge=0, le=50_000_000)
    landmarks: list[Landmark] = Field(max_length=2)
    motto: Optional[str] = Field(max_length=30)


class Contact(BaseModel):
    """What pydantic users write: ge/lt, EmailStr, HttpUrl (minimum, exclusiveMaximum, email, uri)."""

    name: str = Field(max_length=20)
    age: int = Field(ge=18, lt=100)
    email: EmailStr = Field(max_length=40)
    # HttpUrl's schema says only `format: uri`: the http(s) scheme pydantic also wants needs a pattern.
    homepage: HttpUrl = Field(max_length=40, json_schema_extra={"pattern": "^https?://"})


@pytest.fixture(scope="module")
def client(llm_server):
    return OpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def chat(client, **kwargs):
    return client.chat.completions.create(model="light", temperature=0, **{"max_tokens": 200, **kwargs})


def schema_format(schema: dict, strict: bool | None = None) -> dict:
    spec = {"name": "answer", "schema": schema}
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


# --- every enforced keyword, in real output ------------------------------------------------------
@pytest.mark.parametrize("group", list(KEYWORD_SCHEMAS))
def test_every_enforced_keyword_holds_in_real_output(client, group):
    schema = KEYWORD_SCHEMAS[group]
    reply = chat(client, messages=[{"role": "user", "content": "Fill in this form."}],
                 response_format=schema_format(schema, strict=True), max_tokens=300)
    assert reply.choices[0].finish_reason == "stop"
    valid(json.loads(reply.choices[0].message.content), schema)


def test_parse_with_pydantic_models_that_use_bounds_and_formats(client):
    for model, prompt in ((City, "Describe Paris as JSON."), (Contact, "Invent a contact.")):
        completion = client.chat.completions.parse(
            model="light", messages=[{"role": "user", "content": prompt}], response_format=model, temperature=0, max_tokens=300,
        )
        message = completion.choices[0].message
        assert completion.choices[0].finish_reason == "stop"
        assert isinstance(message.parsed, model)
        valid(json.loads(message.content), model.model_json_schema())


def test_json_object_is_one_compact_object(client):
    reply = chat(client, messages=MESSAGES, response_format={"type": "json_object"})
    content = reply.choices[0].message.content
    assert content.startswith("{") and content.endswith("}") and ": " not in content and ", " not in content
    assert isinstance(json.loads(content), dict)


def test_llama_cpp_python_schema_form(client):
    schema = obj({"city": {"type": "string", "maxLength": 30}})
    reply = chat(client, messages=MESSAGES, response_format={"type": "json_object", "schema": schema})
    valid(json.loads(reply.choices[0].message.content), schema)


def test_json_schema_streams(client):
    schema = KEYWORD_SCHEMAS["combinators"]
    stream = chat(client, messages=[{"role": "user", "content": "Fill in."}], response_format=schema_format(schema), max_tokens=300, stream=True)
    chunks = list(stream)
    assert chunks[-1].choices[0].finish_reason == "stop"
    valid(json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)), schema)


def test_max_tokens_cut_says_length(client):
    response_format = schema_format(KEYWORD_SCHEMAS["strings"])
    reply = chat(client, messages=MESSAGES, response_format=response_format, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    stream = chat(client, messages=MESSAGES, response_format=response_format, max_tokens=5, stream=True)
    assert [c.choices[0].finish_reason for c in stream if c.choices][-1] == "length"


def test_completions_endpoint_takes_response_format(client):
    schema = obj({"name": {"type": "string", "maxLength": 20}, "legs": {"enum": [2, 4]}})
    reply = client.completions.create(
        model="light", prompt="A JSON object describing a cat:", max_tokens=100, temperature=0,
        extra_body={"response_format": {"type": "json_object", "schema": schema}},
    )
    assert reply.choices[0].finish_reason == "stop"
    valid(json.loads(reply.choices[0].text), schema)


# --- strict: refused or relaxed ---------------------------------------------------------------------
UNIQUE = obj({"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "minItems": 2, "maxItems": 3, "uniqueItems": True}})


def post(server, body: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(server.base_url + path, json={"model": "light", "temperature": 0, "max_tokens": 60, **body}, timeout=300)


def test_strict_true_refuses_an_unenforceable_keyword_naming_it_and_its_path(llm_server):
    response = post(llm_server, {"messages": MESSAGES, "response_format": schema_format(UNIQUE, strict=True)})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == "response_format.json_schema.schema"
    assert "'uniqueItems' at #/properties/tags " in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_without_strict_it_is_relaxed_and_the_header_says_where(llm_server, stream):
    response = post(llm_server, {"messages": MESSAGES, "response_format": schema_format(UNIQUE), "stream": stream})
    assert response.status_code == 200 and response.headers.get("x-cache") == "MISS"
    assert response.headers[RELAXED] == "uniqueItems at #/properties/tags"
    if stream:
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
        content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    else:
        content = response.json()["choices"][0]["message"]["content"]
    answer = json.loads(content)
    valid(answer, {**UNIQUE, "properties": {"tags": {k: v for k, v in UNIQUE["properties"]["tags"].items() if k != "uniqueItems"}}})
    llm_server.wait_for_log("Schema not strict, relaxed: uniqueItems at #/properties/tags")


def test_strict_false_overlapping_one_of_becomes_any_of(llm_server):
    schema = obj({"v": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "integer", "minimum": 5, "maximum": 20}]}})
    relaxed = post(llm_server, {"messages": MESSAGES, "response_format": schema_format(schema, strict=False)})
    assert relaxed.status_code == 200 and relaxed.headers[RELAXED] == "oneOf at #/properties/v"
    assert 0 <= json.loads(relaxed.json()["choices"][0]["message"]["content"])["v"] <= 20
    refused = post(llm_server, {"messages": MESSAGES, "response_format": schema_format(schema, strict=True)})
    assert refused.status_code == 400 and "'oneOf' at #/properties/v " in refused.json()["error"]["message"]


def test_an_enforced_schema_has_no_relaxed_header(llm_server):
    response = post(llm_server, {"messages": MESSAGES, "response_format": schema_format(KEYWORD_SCHEMAS["numbers"])})
    assert response.status_code == 200 and RELAXED not in response.headers


@pytest.mark.parametrize(
    "schema, param_error",
    [
        ({"type": "strin"}, "Invalid JSON schema"),
        ({"$ref": "#/$defs/missing"}, "Invalid JSON schema"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "cannot be followed"),
    ],
)
def test_broken_schemas_are_400s(llm_server, schema, param_error):
    response = post(llm_server, {"messages": MESSAGES, "response_format": schema_format(schema)})
    assert response.status_code == 400
    error = response.json()["error"]
    assert param_error in error["message"] and error["param"] == "response_format.json_schema.schema"
    assert set(error) == {"message", "type", "param", "code"}
