"""/v1/responses end to end: a real server, the real SmolLM2, the official `openai` client's
`responses.create` / `responses.stream` / `responses.parse`, every object and event checked
against the SDK's own typed models."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, Field, TypeAdapter

pytestmark = pytest.mark.e2e

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
COLOUR = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "warm": {"type": "boolean"}},
    "required": ["name", "warm"],
    "additionalProperties": False,
}
EVENTS = TypeAdapter(ResponseStreamEvent)


def raw_json(http: httpx.Client, **payload) -> dict:
    r = http.post("/v1/responses", json=payload)
    assert r.status_code == 200, r.text
    return r.json()


def streamed(http: httpx.Client, **payload) -> list:
    """The events of a streamed response, each validated as the SDK's typed event."""
    with http.stream("POST", "/v1/responses", json={**payload, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events, name = [], None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                event = EVENTS.validate_python(json.loads(line[6:]))
                assert event.type == name  # the SSE event name is the event's type
                events.append(event)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


@pytest.fixture(scope="module")
def http(llm_server):
    with llm_server.client() as client:
        yield client


def test_create_text(client, http):
    # llama.cpp's first pass over a new prompt can differ at near-ties from later ones (prefix
    # reuse): the answers compared below are the second and third of the same prompt.
    raw_json(http, model="light", input="Name three colours.", max_output_tokens=12, temperature=0)
    reply = client.responses.create(model="light", input="Name three colours.", max_output_tokens=12, temperature=0)
    assert reply.object == "response" and reply.model == "light" and reply.output_text
    assert reply.status in ("completed", "incomplete") and reply.usage.output_tokens <= 12
    body = raw_json(http, model="light", input="Name three colours.", max_output_tokens=12, temperature=0)
    Response.model_validate(body, strict=False)  # every required field, by the SDK's own model
    assert body["output"][0]["content"][0]["text"] == reply.output_text  # greedy: the same answer, generated twice


def test_stream_events_in_order_and_equal_to_the_whole_answer(http):
    request = {"model": "light", "input": "Tell me about the sea.", "max_output_tokens": 10, "temperature": 0}
    raw_json(http, **request)  # the first pass over a prompt may differ at near-ties (see test_create_text)
    events = streamed(http, **request)
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-4].text == text and events[-1].response.output_text == text
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    whole = raw_json(http, **request)
    assert whole["output"][0]["content"][0]["text"] == text
    assert {k for k in whole if k not in ("id", "created_at", "output")} == {
        k for k in events[-1].response.model_dump(exclude_unset=True) if k not in ("id", "created_at", "output")}


def test_function_tool_round_trip_with_previous_response_id(client):
    first = client.responses.create(model="light", input="What is the weather in Paris?", tools=[WEATHER],
                                    tool_choice="required", temperature=0, max_output_tokens=60)
    assert first.status == "completed"
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_") and call.id.startswith("fc_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    second = client.responses.create(
        model="light", previous_response_id=first.id, tools=[WEATHER], temperature=0, max_output_tokens=20,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "sunny"})}],
    )
    assert second.previous_response_id == first.id and second.status in ("completed", "incomplete")
    assert second.usage.input_tokens > first.usage.input_tokens  # the earlier turns reached the model
    assert client.responses.retrieve(second.id).output == second.output


def test_streamed_function_call_events(client, http):
    events = streamed(http, model="light", input="Weather in Rome?", tools=[WEATHER],
                      tool_choice={"type": "function", "name": "get_weather"}, temperature=0, max_output_tokens=60)
    kinds = [e.type for e in events]
    assert kinds[2] == "response.output_item.added" and events[2].item.type == "function_call"
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert done.arguments == deltas and done.name == "get_weather"
    final = events[-1].response.output[0]
    assert final.arguments == deltas and final.call_id and final.status == "completed"
    jsonschema.validate(json.loads(deltas), WEATHER["parameters"])
    # the SDK's stream helper reads the same events into its final response
    with client.responses.stream(model="light", input="Weather in Rome?", tools=[WEATHER], tool_choice="required",
                                 temperature=0, max_output_tokens=60) as stream:
        final_response = stream.get_final_response()
    assert final_response.output[0].arguments == deltas


def test_json_schema_output(client):
    reply = client.responses.create(
        model="light", input="Describe the colour red as JSON.", temperature=0, max_output_tokens=60,
        text={"format": {"type": "json_schema", "name": "colour", "schema": COLOUR, "strict": True}},
    )
    assert reply.status == "completed" and reply.text.format.type == "json_schema"
    jsonschema.validate(json.loads(reply.output_text), COLOUR)

    class Colour(BaseModel):
        name: str = Field(max_length=20)
        warm: bool

    parsed = client.responses.parse(model="light", input="Describe blue.", text_format=Colour, temperature=0,
                                    max_output_tokens=60)
    assert isinstance(parsed.output_parsed, Colour)


def test_streamed_json_schema_with_the_sdk_helper(client):
    with client.responses.stream(model="light", input="Describe green as JSON.", temperature=0, max_output_tokens=60,
                                 text={"format": {"type": "json_schema", "name": "colour", "schema": COLOUR,
                                                  "strict": True}}) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    jsonschema.validate(json.loads(final.output_text), COLOUR)


def test_store_get_delete_with_the_sdk(client):
    reply = client.responses.create(model="light", input="Hi", max_output_tokens=3, temperature=0)
    assert client.responses.retrieve(reply.id).output_text == reply.output_text
    client.responses.delete(reply.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(reply.id)
    assert caught.value.code == "response_not_found"


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                                  {"type": "computer_use_preview", "display_width": 1, "display_height": 1,
                                   "environment": "linux"}])
def test_builtin_tools_are_refused_by_name(client, tool):
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="light", input="Search.", tools=[tool])
    assert caught.value.code == "unsupported_parameter" and f"'{tool['type']}'" in caught.value.message
