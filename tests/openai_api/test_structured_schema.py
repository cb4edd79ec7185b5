"""The protocol layer turns response_format, tools and vLLM's extensions into one neutral
constraint, and refuses two at once by name. No grammar is built here."""

from __future__ import annotations

import pytest

from inference.constraints import AnyJsonObject, Choice, Grammar, JsonSchema, Regex, ToolCalls
from inference.params import ModelSpec
from llmservice.errors import InvalidRequest, UnsupportedParameter
from openai_api.schemas.chat import ChatCompletionRequest
from openai_api.schemas.completions import CompletionRequest

SPEC = ModelSpec(name="light", backend="fake", kind="chat", model_path="x", load={}, defaults={})
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": SCHEMA}}
OTHER = {"type": "function", "function": {"name": "g", "strict": True}}


def constraint(**body):
    request = ChatCompletionRequest.model_validate({"model": "light", "messages": [{"role": "user", "content": "x"}], **body})
    return request.to_generation(SPEC).constraint


@pytest.mark.parametrize(
    "body, expected",
    [
        ({}, None),
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, AnyJsonObject("response_format")),
        ({"response_format": {"type": "json_object", "schema": SCHEMA}}, JsonSchema(SCHEMA, False, "response_format.schema")),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA, "strict": True}}},
         JsonSchema(SCHEMA, True, "response_format.json_schema.schema")),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}},
         JsonSchema(SCHEMA, False, "response_format.json_schema.schema")),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "n"}}}, AnyJsonObject("response_format")),
        ({"structured_outputs": {"regex": "a+"}}, Regex("a+", "structured_outputs.regex")),
        ({"structured_outputs": {"choice": ["a", "b"]}}, Choice(("a", "b"), "structured_outputs.choice")),
        ({"structured_outputs": {"grammar": 'start: "a"'}}, Grammar('start: "a"', "lark", "structured_outputs.grammar")),
        ({"structured_outputs": {"grammar": 'root ::= "a"'}}, Grammar('root ::= "a"', "gbnf", "structured_outputs.grammar")),
        ({"structured_outputs": {"json": SCHEMA}}, JsonSchema(SCHEMA, False, "structured_outputs.json")),
        ({"structured_outputs": {"json_object": True}}, AnyJsonObject("structured_outputs.json_object")),
        ({"guided_json": '{"type": "integer"}'}, JsonSchema({"type": "integer"}, False, "guided_json")),
        ({"guided_regex": "a+"}, Regex("a+", "guided_regex")),
        ({"guided_choice": ["x"]}, Choice(("x",), "guided_choice")),
        ({"guided_grammar": 'root ::= "a"'}, Grammar('root ::= "a"', "gbnf", "guided_grammar")),
        ({"tools": [TOOL], "tool_choice": "none"}, None),
    ],
)
def test_each_form_becomes_its_neutral_constraint(body, expected):
    assert constraint(**body) == expected


def test_tools_become_tool_calls_with_their_strict_flags():
    calls = constraint(tools=[TOOL, OTHER])
    assert isinstance(calls, ToolCalls) and calls.choice == "auto" and calls.parallel and calls.only is None
    assert [(t.name, t.strict) for t in calls.tools] == [("f", False), ("g", True)]
    assert calls.tools[1].parameters == {"type": "object", "properties": {}, "additionalProperties": False}


@pytest.mark.parametrize("parallel", [None, True, False])
def test_a_named_tool_choice_is_exactly_one_call(parallel):
    body = {"tools": [TOOL, OTHER], "tool_choice": {"type": "function", "function": {"name": "g"}}}
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    calls = constraint(**body)
    assert calls.only == "g" and calls.choice == "required" and calls.parallel is False


@pytest.mark.parametrize(
    "body, param",
    [
        ({"tools": [TOOL], "response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_object"}, "guided_regex": "a"}, "guided_regex"),
        ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs.choice"),
        ({"guided_choice": ["a"], "guided_grammar": 'start: "a"'}, "guided_grammar"),
        ({"tools": [TOOL], "structured_outputs": {"json": SCHEMA}}, "structured_outputs.json"),
        ({"guided_regex": "a", "stop": "x"}, "stop"),
        ({"tools": [TOOL], "stop": ["x"]}, "stop"),
    ],
)
def test_two_constraints_or_stop_with_one_are_refused_by_name(body, param):
    with pytest.raises(UnsupportedParameter) as caught:
        constraint(**body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    "body, param",
    [({"guided_choice": []}, "guided_choice"), ({"guided_choice": ["a", ""]}, "guided_choice"),
     ({"guided_json": "[1"}, "guided_json"), ({"guided_json": "[1]"}, "guided_json")],
)
def test_malformed_extensions_are_400s(body, param):
    with pytest.raises(InvalidRequest) as caught:
        constraint(**body)
    assert caught.value.param == param


def test_completions_take_the_extensions_and_refuse_echo_with_them():
    request = CompletionRequest.model_validate({"model": "light", "prompt": "x", "guided_choice": ["a", "b"]})
    assert request.to_generations(SPEC)[0].constraint == Choice(("a", "b"), "guided_choice")
    request = CompletionRequest.model_validate({"model": "light", "prompt": "x", "echo": True, "guided_regex": "a"})
    with pytest.raises(UnsupportedParameter) as caught:
        request.to_generations(SPEC)
    assert caught.value.param == "echo"
