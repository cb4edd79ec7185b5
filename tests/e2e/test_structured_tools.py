"""Tool calls through the official `openai` client against a real server and SmolLM2: every
tool_choice mode, streamed and not, conversations, and the repeated-call stop."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest
from openai import OpenAI

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
ADD = {  # bounds as pydantic writes them (LangChain's standard tests use gt/lt)
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "exclusiveMinimum": -1000, "exclusiveMaximum": 1000},
                           "b": {"type": "integer", "minimum": -999, "maximum": 999}},
            "required": ["a", "b"],
        },
    },
}
PING = {"type": "function", "function": {"name": "ping", "description": "Check the network.", "parameters": {"type": "object", "properties": {}}}}
PARAMETERS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD, PING)}


@pytest.fixture(scope="module")
def client(llm_server):
    return OpenAI(base_url=llm_server.base_url + "/v1", api_key="unused", max_retries=0, timeout=300)


def chat(client, **kwargs):
    return client.chat.completions.create(model="light", temperature=0, **{"max_tokens": 200, **kwargs})


def check_calls(message, names=None):
    assert message.content is None
    assert message.tool_calls
    for call in message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in (names or PARAMETERS)
        jsonschema.validate(json.loads(call.function.arguments), PARAMETERS[call.function.name])


def streamed_calls(stream) -> tuple[dict[int, dict], str | None, str]:
    calls: dict[int, dict] = {}
    finish, content = None, ""
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        content += choice.delta.content or ""
        for delta in choice.delta.tool_calls or []:
            if delta.index not in calls:  # the first chunk of a call carries id, type and name
                assert delta.id and delta.type == "function" and delta.function.name
                calls[delta.index] = {"name": delta.function.name, "arguments": delta.function.arguments or ""}
            else:
                assert delta.id is None and not delta.function.name
                calls[delta.index]["arguments"] += delta.function.arguments or ""
    return calls, finish, content


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required(client, stream):
    if not stream:
        reply = chat(client, messages=MESSAGES, tools=[WEATHER, ADD], tool_choice="required")
        assert reply.choices[0].finish_reason == "tool_calls"
        check_calls(reply.choices[0].message)
        return
    calls, finish, content = streamed_calls(chat(client, messages=MESSAGES, tools=[WEATHER, ADD], tool_choice="required", stream=True))
    assert finish == "tool_calls" and calls and content == ""
    assert sorted(calls) == list(range(len(calls)))
    for call in calls.values():
        jsonschema.validate(json.loads(call["arguments"]), PARAMETERS[call["name"]])


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("parallel", [True, False])
def test_a_named_tool_choice_is_exactly_one_call_whatever_parallel_says(client, stream, parallel):
    choice = {"type": "function", "function": {"name": "add"}}
    kwargs = dict(messages=[{"role": "user", "content": "Add 2 and 3, then add 4 and 5."}], tools=[WEATHER, ADD], tool_choice=choice, parallel_tool_calls=parallel)
    if stream:
        calls, finish, _ = streamed_calls(chat(client, stream=True, **kwargs))
        assert finish == "tool_calls" and [c["name"] for c in calls.values()] == ["add"]
        jsonschema.validate(json.loads(calls[0]["arguments"]), PARAMETERS["add"])
    else:
        reply = chat(client, **kwargs)
        assert reply.choices[0].finish_reason == "tool_calls"
        check_calls(reply.choices[0].message, names={"add"})
        assert len(reply.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_auto_is_text_or_calls(client, stream):
    for content in ("What is the weather in Paris?", "Hello! Tell me a joke."):
        kwargs = dict(messages=[{"role": "user", "content": content}], tools=[WEATHER, ADD], max_tokens=80)
        if stream:
            calls, finish, text = streamed_calls(chat(client, stream=True, **kwargs))
            assert (finish == "tool_calls" and calls and not text) or (finish in ("stop", "length") and text and not calls)
            continue
        choice = chat(client, **kwargs).choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason == "tool_calls"
            check_calls(choice.message)
        else:
            assert choice.finish_reason in ("stop", "length")
            assert choice.message.content and not choice.message.content.startswith("<tool_call>")


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_answers_in_text(client, stream):
    kwargs = dict(messages=MESSAGES, tools=[WEATHER], tool_choice="none", max_tokens=20)
    if stream:
        calls, _, text = streamed_calls(chat(client, stream=True, **kwargs))
        assert not calls and text
    else:
        reply = chat(client, **kwargs)
        assert reply.choices[0].message.tool_calls is None and reply.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
def test_a_repeated_call_ends_the_answer_and_is_dropped(client, stream):
    """ping has no arguments, so any second ping repeats the first."""
    kwargs = dict(messages=[{"role": "user", "content": "Ping the network three times."}], tools=[PING], tool_choice="required",
                  parallel_tool_calls=True, max_tokens=150)
    if stream:
        calls, finish, _ = streamed_calls(chat(client, stream=True, **kwargs))
        assert finish == "tool_calls" and [c["name"] for c in calls.values()] == ["ping"]
    else:
        reply = chat(client, **kwargs)
        assert reply.choices[0].finish_reason == "tool_calls"
        assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["ping"]
        assert reply.usage.completion_tokens < 150


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


def test_a_non_strict_tool_relaxes_and_a_strict_one_refuses(llm_server):
    tagged = {"type": "function", "function": {"name": "tag", "parameters": {
        "type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2, "uniqueItems": True}},
        "required": ["tags"]}}}
    body = {"model": "light", "temperature": 0, "max_tokens": 60, "messages": MESSAGES, "tools": [WEATHER, tagged], "tool_choice": "required"}
    relaxed = httpx.post(llm_server.base_url + "/v1/chat/completions", json=body, timeout=300)
    assert relaxed.status_code == 200
    assert relaxed.headers["x-schema-relaxed"] == "uniqueItems at tools.1.function.parameters#/properties/tags"
    tagged["function"]["strict"] = True
    refused = httpx.post(llm_server.base_url + "/v1/chat/completions", json=body, timeout=300)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "tools.1.function.parameters" and "'uniqueItems' at tools.1.function.parameters#/properties/tags" in error["message"]


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
        ({"tools": [WEATHER, WEATHER]}, "tools.1.function.name"),
        ({"tools": [WEATHER], "stop": ["}"]}, "stop"),
        ({"response_format": {"type": "json_object"}, "stop": ["}"]}, "stop"),
        ({"response_format": {"type": "json_object"}, "tools": [WEATHER]}, "response_format"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}}}}]},
         "tools.0.function.parameters"),
    ],
)
def test_bad_tool_and_format_requests_get_a_400(llm_server, extra, param):
    response = httpx.post(llm_server.base_url + "/v1/chat/completions", json={"model": "light", "messages": MESSAGES, **extra}, timeout=120)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
