"""Structured output and tools through the official `openai` client against a real server and SmolLM2.

A 135M model chooses poorly: these tests check structure and schema validity, never content.
"""

from __future__ import annotations

import json
from typing import Literal, Optional

import httpx
import jsonschema
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}

# Every feature the issue lists: required, types, enum, const, nested objects, arrays with
# min/max items, additionalProperties false, $defs/$ref, anyOf, nullable.
FULL_SCHEMA = {
    "type": "object",
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 30}, "zip": {"type": ["string", "null"], "maxLength": 10}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "kind": {"const": "person"},
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "role": {"type": "string", "enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 3},
        "address": {"$ref": "#/$defs/Address"},
        "contact": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "integer"}]},
        "nickname": {"type": "string", "maxLength": 20, "nullable": True},
    },
    "required": ["kind", "name", "age", "score", "active", "role", "tags", "address", "contact", "nickname"],
    "additionalProperties": False,
}


class Landmark(BaseModel):
    name: str = Field(max_length=30)
    kind: Literal["museum", "tower", "park", "other"]


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population: int
    landmarks: list[Landmark] = Field(max_length=2)
    motto: Optional[str] = Field(max_length=30)


@pytest.fixture(scope="module")
def client(llm_server):
    return OpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def chat(client, **kwargs):
    return client.chat.completions.create(model="light", temperature=0, **{"max_tokens": 200, **kwargs})


# --- response_format ---------------------------------------------------------------------------
def test_parse_with_a_pydantic_model(client):
    completion = client.chat.completions.parse(
        model="light",
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format=City,
        temperature=0,
        max_tokens=300,
    )
    message = completion.choices[0].message
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(message.parsed, City)
    jsonschema.validate(json.loads(message.content), City.model_json_schema())


def test_json_object_is_one_clean_object(client):
    reply = chat(client, messages=MESSAGES, response_format={"type": "json_object"})
    content = reply.choices[0].message.content
    assert content == content.strip() and content.startswith("{") and content.endswith("}")
    assert isinstance(json.loads(content), dict)


def test_json_schema_with_every_supported_feature(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": FULL_SCHEMA, "strict": True}}
    reply = chat(client, messages=[{"role": "user", "content": "Invent a person."}], response_format=response_format, max_tokens=400)
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), FULL_SCHEMA)


def test_llama_cpp_python_schema_form(client):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}
    reply = chat(client, messages=MESSAGES, response_format={"type": "json_object", "schema": schema})
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)


def test_json_schema_streams(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": FULL_SCHEMA}}
    stream = chat(client, messages=[{"role": "user", "content": "Invent a person."}], response_format=response_format, max_tokens=400, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(text), FULL_SCHEMA)


def test_max_tokens_cut_says_length(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": FULL_SCHEMA}}
    reply = chat(client, messages=MESSAGES, response_format=response_format, max_tokens=5)
    assert reply.choices[0].finish_reason == "length"
    stream = chat(client, messages=MESSAGES, response_format=response_format, max_tokens=5, stream=True)
    assert [c.choices[0].finish_reason for c in stream if c.choices][-1] == "length"


def test_completions_endpoint_takes_response_format(client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "legs": {"enum": [2, 4]}},
        "required": ["name", "legs"],
        "additionalProperties": False,
    }
    reply = client.completions.create(
        model="light", prompt="A JSON object describing a cat:", max_tokens=100, temperature=0,
        extra_body={"response_format": {"type": "json_object", "schema": schema}},
    )
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].text), schema)


# --- tools -----------------------------------------------------------------------------------------
def check_calls(message, names=None):
    assert message.content is None
    assert message.tool_calls
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in (names or PARAMETERS)
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


def test_tool_choice_required(client):
    reply = chat(client, messages=MESSAGES, tools=[WEATHER, ADD], tool_choice="required")
    assert reply.choices[0].finish_reason == "tool_calls"
    check_calls(reply.choices[0].message)


def test_named_tool_choice_and_no_parallel_calls(client):
    choice = {"type": "function", "function": {"name": "add"}}
    reply = chat(client, messages=MESSAGES, tools=[WEATHER, ADD], tool_choice=choice, parallel_tool_calls=False)
    assert reply.choices[0].finish_reason == "tool_calls"
    check_calls(reply.choices[0].message, names={"add"})
    assert len(reply.choices[0].message.tool_calls) == 1


def test_tool_choice_auto_is_text_or_calls(client):
    for content in ("What is the weather in Paris?", "Hello! Tell me a joke."):
        reply = chat(client, messages=[{"role": "user", "content": content}], tools=[WEATHER, ADD], max_tokens=80)
        choice = reply.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            check_calls(choice.message)
        else:
            assert choice.finish_reason in ("stop", "length")
            assert choice.message.content and not choice.message.content.startswith("<tool_call>")


def test_tool_choice_none_answers_in_text(client):
    reply = chat(client, messages=MESSAGES, tools=[WEATHER], tool_choice="none", max_tokens=20)
    assert reply.choices[0].message.tool_calls is None
    assert isinstance(reply.choices[0].message.content, str)


def test_streaming_tool_calls(client):
    stream = chat(client, messages=MESSAGES, tools=[WEATHER, ADD], tool_choice="required", stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            if delta.index not in calls:  # the first chunk of a call carries id, type and name
                assert delta.id and delta.type == "function" and delta.function.name
                calls[delta.index] = {"name": delta.function.name, "arguments": delta.function.arguments or ""}
            else:
                assert delta.id is None and not delta.function.name
                calls[delta.index]["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls" and calls
    assert sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        jsonschema.validate(json.loads(call["arguments"]), PARAMETERS[call["name"]])


def test_conversation_continues_after_a_tool_result(client):
    first = chat(client, messages=MESSAGES, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *MESSAGES,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C."},
    ]
    reply = chat(client, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=30)
    assert isinstance(reply.choices[0].message.content, str) and reply.choices[0].message.content


# --- refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "schema, feature",
    [
        ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}, "minimum"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "patternProperties"),
        ({"type": "string", "format": "email"}, "format: email"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
        ({"not": {"type": "string"}}, "not"),
    ],
)
def test_unenforceable_schema_features_are_refused(llm_server, schema, feature):
    body = {
        "model": "light",
        "messages": MESSAGES,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    response = httpx.post(llm_server.base_url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 400
    error = response.json()["error"]
    assert f"'{feature}'" in error["message"] and error["param"] == "response_format.json_schema.schema"
    assert error["code"] == "unsupported_parameter"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
        ({"tools": [WEATHER, WEATHER]}, "tools.1.function.name"),
        ({"response_format": {"type": "json_object"}, "stop": ["}"]}, "stop"),
        ({"response_format": {"type": "json_object"}, "tools": [WEATHER]}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "integer", "maximum": 3}}}}}]}, "tools.0.function.parameters"),
    ],
)
def test_bad_tool_and_format_requests_get_a_400(llm_server, extra, param):
    response = httpx.post(llm_server.base_url + "/v1/chat/completions", json={"model": "light", "messages": MESSAGES, **extra}, timeout=120)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
