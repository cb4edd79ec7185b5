"""The Responses renderer and input conversion, as units: objects and events checked against the
openai SDK's typed models; reasoning items; a replay sends what a live stream sends."""

from __future__ import annotations

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from inference.params import ModelSpec, SamplingParams
from openai_api.schemas.responses import ResponseCreateRequest, input_messages
from openai_api.serving.choices import ReasoningOut, TextOut
from openai_api.serving.responses_render import Echo, ResponseWriter
from openai_api.serving.results import ChoiceResult, GenerationResult, ToolCallResult

EVENTS = TypeAdapter(list[ResponseStreamEvent])
SPEC = ModelSpec(name="light", backend="llamacpp", kind="chat", model_path="x.gguf", load={}, defaults={})


def answer(text: str = "", *, calls=(), reasoning=None, finish_reason="stop", prompt_tokens=0, completion_tokens=0):
    """A run's result with one choice (a response has one)."""
    choice = ChoiceResult(0, text=text, reasoning=reasoning, finish_reason=finish_reason, completion_tokens=completion_tokens,
                          tool_calls=[ToolCallResult(f"call_{n}", name, arguments) for n, (name, arguments) in enumerate(calls)])
    return GenerationResult(choices=[choice], prompt_tokens=prompt_tokens)


def writer(**request) -> ResponseWriter:
    body = ResponseCreateRequest.model_validate({"model": "light", "input": "hi", **request})
    return ResponseWriter("resp_1", 1700000000, Echo("light", body, SamplingParams(temperature=0.5)))


def test_reasoning_text_and_calls_become_items_in_order():
    result = answer(calls=[("f", '{"a": 1}'), ("g", "{}")], reasoning="Think first.", finish_reason="tool_calls",
                    prompt_tokens=3, completion_tokens=9)
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in ("f", "g")]
    response = Response.model_validate(writer(tools=tools).whole(result))
    assert [item.type for item in response.output] == ["reasoning", "function_call", "function_call"]
    assert response.output[0].content[0].text == "Think first." and response.output[0].summary == []
    assert [(c.name, c.arguments, c.call_id) for c in response.output[1:]] == [("f", '{"a": 1}', "call_0"), ("g", "{}", "call_1")]
    assert response.status == "completed" and response.temperature == 0.5 and response.usage.total_tokens == 12
    assert response.tools[0].strict is True  # the Responses API's default


def test_replayed_events_are_typed_and_numbered():
    events = EVENTS.validate_python(list(writer().replay(answer("Hello.", reasoning="Hm.", finish_reason="length"))))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.incomplete",
    ]
    final = events[-1].response
    assert final.output_text == "Hello." and final.output[1].status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"


def test_a_live_stream_and_its_replay_send_the_same_events():
    live = writer()
    events = live.start()
    for out in (ReasoningOut(0, "H"), ReasoningOut(0, "m."), TextOut(0, "Hel"), TextOut(0, "lo"), TextOut(0, "!")):
        events += live.output(out)
    result = answer("Hello!", reasoning="Hm.", prompt_tokens=2, completion_tokens=3)
    events += live.finish(result)
    replayed = list(writer().replay(result))
    strip = lambda evs: [(e["type"], e.get("output_index")) for e in evs if not e["type"].endswith("_text.delta")]  # noqa: E731
    assert strip(events) == strip(replayed)
    assert events[-1]["response"]["output"][1]["content"] == replayed[-1]["response"]["output"][1]["content"]
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "Hm."


def test_an_empty_answer_is_an_empty_message():
    response = Response.model_validate(writer().whole(answer("")))
    assert response.output[0].type == "message" and response.output_text == ""


def test_input_items_become_chat_messages():
    body = ResponseCreateRequest.model_validate({"model": "light", "input": [
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done.", "annotations": []}]},
    ]})
    messages = [m.as_template_dict() for m in input_messages(body.input_items())]
    assert messages == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
        {"role": "tool", "content": "one", "tool_call_id": "c1"},
        {"role": "tool", "content": "two", "tool_call_id": "c2"},
        {"role": "assistant", "content": "Done."},
    ]
    request = body.to_generation(SPEC, [])
    assert request.messages[0].role == "system" and request.sampling.max_tokens is None


def test_the_writers_objects_and_events_are_the_documented_models():
    """What the OpenAPI document declares (schemas/response_objects.py) is what the writer sends."""
    from openai_api.schemas.response_objects import ResponseObject, ResponseStreamEvent

    documented = TypeAdapter(list[ResponseStreamEvent])
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]
    for result in (answer("Hi.", reasoning="Hm."), answer(calls=[("f", "{}")], finish_reason="tool_calls"),
                   answer("Cut", finish_reason="length")):
        events = list(writer(tools=tools).replay(result))
        assert len(documented.validate_python(events, strict=True)) == len(events)
        ResponseObject.model_validate(events[-1]["response"], strict=True)
        ResponseObject.model_validate(writer(tools=tools, instructions="Be brief.").whole(result), strict=True)


def test_the_openapi_document_holds_the_response_and_its_events():
    from openai_api.api import api

    document = api.get_openapi_schema()
    create = document["paths"]["/v1/responses"]["post"]["responses"][200]["content"]["application/json"]["schema"]
    assert create == {"$ref": "#/components/schemas/ResponseObject"}
    assert {"ResponseLifecycleEvent", "OutputTextDeltaEvent", "FunctionCallArgumentsDeltaEvent", "ErrorEvent"} <= set(
        document["components"]["schemas"])
