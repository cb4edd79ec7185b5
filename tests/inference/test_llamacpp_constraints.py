"""The llama.cpp backend enforces constraints with the real SmolLM2 model."""

from __future__ import annotations

import json

import jsonschema
import pytest

from inference.events import Delta, Finished
from inference.grammar import schema_check
from inference.params import ChatMessage, GenerationRequest, JsonOutput, ModelSpec, SamplingParams, ToolSpec, ToolUse
from inference.tools import parse_answer, tool_messages

TREE = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {"label": {"type": "string", "maxLength": 12}, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}, "maxItems": 2}},
            "required": ["label"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/Node",
}


@pytest.fixture(scope="module")
def backend():
    from inference.backends.llamacpp import LlamaCppBackend
    from inference.bundled import smollm2_gguf

    spec = ModelSpec(name="light", backend="llamacpp", kind="chat", model_path=smollm2_gguf(), load={"n_threads": 2}, defaults={})
    loaded = LlamaCppBackend.load(spec)
    yield loaded
    loaded.close()


def run(backend, messages, constraint, max_tokens=200):
    request = GenerationRequest(
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens), messages=tuple(messages), constraint=constraint
    )
    text, finished = "", None
    for event in backend.generate(request, lambda: False):
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
    return text, finished.reason


def test_recursive_schema_is_followed(backend):
    text, reason = run(backend, [ChatMessage(role="user", content="A small family tree.")], JsonOutput(schema_check(schema=TREE, param="x")), 300)
    assert reason == "stop"
    jsonschema.validate(json.loads(text), TREE)


def test_required_tool_call_is_well_formed(backend):
    parameters = schema_check(schema={"type": "object", "properties": {"q": {"type": "string", "maxLength": 30}}, "required": ["q"]}, param="x")
    use = ToolUse(tools=(ToolSpec("search", "Search the web", parameters),), choice="required", parallel=False)
    messages = tool_messages([ChatMessage(role="user", content="Find the height of the Eiffel tower.")], use)
    text, reason = run(backend, messages, use)
    answer = parse_answer(text, "required")
    assert reason == "stop" and len(answer.calls) == 1
    name, arguments = answer.calls[0]
    assert name == "search"
    jsonschema.validate(json.loads(arguments), parameters)


def test_a_cut_answer_says_length(backend):
    _, reason = run(backend, [ChatMessage(role="user", content="A tree.")], JsonOutput(schema_check(schema=TREE, param="x")), 4)
    assert reason == "length"
