"""The HTTP layer through Django's async client, with the fake backend."""

import json

import pytest

from registry.models import Tier
from tests.fakes import FakeBackend
from tests.openai_api.conftest import assert_error
from tests.sse import merged, sse_events as parse_sse

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


async def sse_events(response):
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    frames = [f for f in body.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    return [json.loads(f[6:]) for f in frames[:-1]]


async def test_chat_completion_object(post, fake_tier, manager):
    r = await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 3})
    assert r.status_code == 200
    body = json.loads(r.content)
    assert body["object"] == "chat.completion" and body["model"] == "fake" and body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "w0 w1 w2 ", "refusal": None}, "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


async def test_alias_resolves_to_the_tier(post, fake_tier, manager):
    r = await post(CHAT, {"model": "pretend", "messages": USER, "max_tokens": 1})
    assert json.loads(r.content)["model"] == "fake"


async def test_text_content_parts_are_joined(post, fake_tier, manager):
    messages = [{"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "text", "text": " c"}]}]
    r = await post(CHAT, {"model": "fake", "messages": messages, "max_tokens": 1})
    assert json.loads(r.content)["usage"]["prompt_tokens"] == 3


async def test_n_choices(post, fake_tier, manager):
    r = await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 2, "n": 3, "seed": 5})
    body = json.loads(r.content)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["completion_tokens"] == 6


async def test_stream_chunks_role_first_finish_last_then_usage(post, fake_tier, manager):
    r = await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 2, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r["Content-Type"] == "text/event-stream"
    events = await sse_events(r)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["w0 ", "w1 "]
    assert events[3]["choices"][0]["finish_reason"] == "length"
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:3])
    assert events[4]["choices"] == [] and events[4]["usage"]["total_tokens"] == 3
    assert all(e["usage"] is None for e in events[:4])


async def test_stream_without_include_usage_has_no_usage(post, fake_tier, manager):
    events = await sse_events(await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 1, "stream": True}))
    assert all("usage" not in e for e in events)


@pytest.mark.parametrize(
    "change, param, code",
    [
        ({"messages": []}, "messages", "invalid_value"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0", None),
        ({"messages": [{"role": "user"}]}, "messages.0.content", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text", "missing_required_parameter"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f"}}]}]}, "messages.0.tool_calls.0.function.arguments", "missing_required_parameter"),
        ({"temperature": 3}, "temperature", "invalid_value"),
        ({"temperature": "hot"}, "temperature", None),
        ({"top_p": 1.5}, "top_p", "invalid_value"),
        ({"max_tokens": -1}, "max_tokens", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"max_completion_tokens": "ten"}, "max_completion_tokens", None),
        ({"n": 0}, "n", "invalid_value"),
        ({"presence_penalty": -3}, "presence_penalty", "invalid_value"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs", "invalid_value"),
        ({"top_logprobs": 2}, "top_logprobs", "invalid_value"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
        ({"logit_bias": {"abc": 1}}, "logit_bias", "invalid_value"),
        ({"logit_bias": {"5": 101}}, "logit_bias", "invalid_value"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({"frobnicate": True}, "frobnicate", "unknown_parameter"),
        ({"audio": {"voice": "x"}}, "audio", "unsupported_parameter"),
        ({"modalities": ["text", "audio"]}, "modalities", "unsupported_parameter"),
        ({"store": True}, "store", "unsupported_parameter"),
        ({"functions": [{"name": "f"}]}, "functions", "unsupported_parameter"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}, "messages.0.content.0", "unsupported_parameter"),
    ],
)
async def test_bad_chat_inputs_get_the_envelope(post, fake_tier, manager, change, param, code):
    r = await post(CHAT, {"model": "fake", "messages": USER, **change})
    assert_error(r, 400, code=code, param=param)


# Everything the README lists as "refused with a 400 naming the parameter" (chat).
README_REFUSED = [
    ({"mystery_field": 1}, "mystery_field"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]}, "messages.0.content.0"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]}, "messages.0.content.0"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"modalities": ["audio"]}, "modalities"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"verbosity": "low"}, "verbosity"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"store": True}, "store"),
]


@pytest.mark.parametrize("change, param", README_REFUSED)
async def test_every_parameter_the_readme_refuses_is_refused_by_name(post, fake_tier, manager, change, param):
    r = await post(CHAT, {"model": "fake", "messages": USER, **change})
    error = assert_error(r, 400, param=param)
    assert error["code"] in ("unsupported_parameter", "unknown_parameter")
    assert param.split(".")[0] in error["message"] or "content type" in error["message"]
    assert manager.status() == {}  # refused before any model was asked


async def test_accepted_neighbours_of_refused_parameters(post, fake_tier, manager):
    ok = {"modalities": ["text"], "store": False, "service_tier": "auto", "user": "u1", "metadata": {"k": "v"},
          "prompt_cache_key": "conversation-7", "safety_identifier": "user-hash-1"}
    r = await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 1, **ok})
    assert r.status_code == 200, r.content


async def test_an_error_after_the_stream_started_is_one_error_event_then_done(post, fake_tier, manager):
    fake_tier.model_path = "crash"  # the fake backend fails after two tokens
    await fake_tier.asave()
    r = await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 5, "stream": True})
    assert r.status_code == 200 and r["Content-Type"] == "text/event-stream"  # the status was already sent
    body = b"".join([chunk async for chunk in r.streaming_content]).decode()
    frames = [f for f in body.split("\n\n") if f]
    assert frames[-1] == "data: [DONE]" and body.endswith("\n\n")
    error = json.loads(frames[-2].removeprefix("data: "))
    assert error == {"error": {"message": "The model failed while generating; see the server log.",
                               "type": "server_error", "param": None, "code": "internal_error"}}
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-2]]
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "w0 ", "w1 "]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)  # no finish: it did not finish
    # the same worker serves the next request (two tokens: before the fake's crash point)
    assert (await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 2})).status_code == 200
    assert manager.status()["fake"].requests == 2 and FakeBackend.loads == 1


async def test_missing_model_parameter(post, fake_tier):
    assert_error(await post(CHAT, {"messages": USER}), 400, code="missing_required_parameter", param="model")


@pytest.mark.parametrize("raw", ['{"model": "fake", "messages": [', "not json", "[1, 2]", '"text"', "", "null"])
async def test_malformed_bodies_get_the_envelope(post, fake_tier, raw):
    assert_error(await post(CHAT, None, raw=raw), 400)


async def test_unknown_model_is_404(post, fake_tier):
    assert_error(await post(CHAT, {"model": "gpt-4o", "messages": USER}), 404, code="model_not_found", param="model")


async def test_model_that_fails_to_load_is_503(post, fake_tier, manager):
    fake_tier.model_path = "missing"
    await fake_tier.asave()
    error = assert_error(await post(CHAT, {"model": "fake", "messages": USER}), 503, code="model_unavailable")
    assert "model file not found" in error["message"]


async def test_prompt_too_long_is_context_length_exceeded(post, fake_tier, manager):
    messages = [{"role": "user", "content": "word " * 100}]
    assert_error(await post(CHAT, {"model": "fake", "messages": messages}), 400, code="context_length_exceeded", param="messages")
    stream = await post(CHAT, {"model": "fake", "messages": messages, "stream": True})
    assert_error(stream, 400, code="context_length_exceeded")  # refused before the stream starts


async def test_non_chat_tier_refuses_chat(post, fake_tier):
    fake_tier.kind = "embedding"
    await fake_tier.asave()
    assert_error(await post(CHAT, {"model": "fake", "messages": USER}), 400, code="model_not_supported", param="model")


async def test_unknown_route_and_wrong_method_get_the_envelope(client):
    assert_error(await client.get("/v1/nothing"), 404)
    assert_error(await client.get(CHAT), 405)


async def test_include_obfuscation_is_accepted_and_adds_nothing(post, fake_tier, manager):
    body = {"model": "fake", "messages": USER, "max_tokens": 2, "stream": True,
            "stream_options": {"include_usage": True, "include_obfuscation": True}}
    r = await post(CHAT, body)
    assert r.status_code == 200
    events = [e for e in parse_sse(b"".join([c async for c in r.streaming_content])) if e]
    assert events[-1]["usage"]["completion_tokens"] == 2
    assert not any("obfuscation" in e or any("obfuscation" in c for c in e["choices"]) for e in events)


async def test_thinking_is_split_into_reasoning_content(post, manager, db):
    """The fake thinker reports tags and writes them cut across tokens (tests/fakes.py)."""
    await Tier.objects.acreate(name="thinker", backend="fake", model_path="thinker")
    whole = json.loads((await post(CHAT, {"model": "thinker", "messages": USER})).content)
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think."
    assert message["content"] == "The answer is 4."
    r = await post(CHAT, {"model": "thinker", "messages": USER, "stream": True})
    events = parse_sse(b"".join([c async for c in r.streaming_content]))
    (choice,) = merged(events).values()
    assert (choice["reasoning"], choice["text"]) == ("Let me think.", "The answer is 4.")
    deltas = [c["delta"] for e in events if e for c in e["choices"]]
    assert all(not ("content" in d and "reasoning_content" in d) for d in deltas)


async def test_a_model_without_thinking_tags_has_no_reasoning_content(post, fake_tier, manager):
    message = json.loads((await post(CHAT, {"model": "fake", "messages": USER, "max_tokens": 2})).content)["choices"][0]["message"]
    assert "reasoning_content" not in message


@pytest.fixture
def prefilling(db):
    Tier.objects.create(name="prefilling", backend="fake", model_path="prefill")


async def test_a_streams_role_chunk_goes_out_while_the_prompt_is_read(prefilling):
    """The choice opens (its role chunk is written) once the prompt is accepted, not with the first
    token: that work overlaps the prefill instead of delaying the first token. The fake model holds
    its first token until the role chunk has reached the client."""
    import asyncio

    from llmservice.asgi import http_application
    from tests.llmservice.test_guards import JSON

    body = json.dumps({"model": "prefilling", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                       "stream": True}).encode()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    chunks, before_first_token = [], []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            if not chunks:
                before_first_token.append(not FakeBackend.prefill_gate.is_set())
                FakeBackend.prefill_gate.set()
            chunks.append(message["body"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), *JSON], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}
    await asyncio.wait_for(http_application(scope, receive, send), 30)
    events = parse_sse(b"".join(chunks))
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert before_first_token == [True]  # written while the model still held its first token
    assert merged(events)[0]["text"] == "w0 w1 "
