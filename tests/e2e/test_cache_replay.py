"""A cache hit against the live answer it replays, on a real server with the real SmolLM2: the
same renderer, fields, types and chunk-sequence shape, identical merged content (only ids,
timestamps, chunk boundaries and X-Cache differ). Also the current request fields and headers."""

import httpx
import pytest

from tests.e2e.live import EOG_BAN
from tests.server import LiveServer
from tests.sse import merged, shape, skeleton, sse_events, without_ids

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                          "required": ["city"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CASES = {
    "chat text, logprobs, 2 choices": ("/v1/chat/completions", {
        "messages": ASK, "max_tokens": 6, "logit_bias": EOG_BAN, "logprobs": True, "top_logprobs": 2, "n": 2}),
    "chat forced tool call": ("/v1/chat/completions", {
        "messages": ASK, "max_tokens": 24, "tools": [WEATHER], "tool_choice": "required"}),
    "completions, 2 prompts, echo": ("/v1/completions", {
        "prompt": ["Once upon a time", "The sky is"], "max_tokens": 5, "echo": True, "logit_bias": EOG_BAN}),
    "completions logprobs": ("/v1/completions", {"prompt": "One, two,", "max_tokens": 5, "logprobs": 2, "logit_bias": EOG_BAN}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("replay"), env={"CACHE_PERSIST_TO_DISK": "true"})
    server.start()
    yield server
    server.stop()


def call(server, path, body):
    with httpx.Client(base_url=server.base_url, timeout=600) as client:
        response = client.post(path, json={"model": "light", "temperature": 0, **body})
    assert response.status_code == 200, response.text
    events = sse_events(response.content) if body.get("stream") else response.json()
    return response.headers["x-cache"], events, response


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("stream", [False, True])
def test_a_hit_equals_the_live_answer(server, case, stream):
    path, body = CASES[case]
    # `stream` is not part of the cache key: each mode gets its own seed (greedy: same text) to start with a MISS
    body = {**body, "seed": 11} if not stream else {**body, "seed": 12, "stream": True, "stream_options": {"include_usage": True}}
    live_mark, live, _ = call(server, path, body)
    hit_mark, hit, _ = call(server, path, body)
    assert (live_mark, hit_mark) == ("MISS", "HIT")  # never a replay compared with itself
    if stream:
        assert len(live) > len(hit) or case == "chat forced tool call"  # the live one came token by token
        assert shape(hit) == shape(live)
        assert merged(hit) == merged(live)
        assert hit[-2]["usage"] == live[-2]["usage"]
    else:
        assert without_ids(hit) == without_ids(live)
        assert skeleton(hit) == skeleton(live)
    if case == "chat forced tool call":
        calls = [c for choice in merged(hit).values() for c in choice["calls"].values()] if stream else \
            hit["choices"][0]["message"]["tool_calls"]
        assert calls and (calls[0].get("name") or calls[0]["function"]["name"]) == "get_weather"


def test_a_streamed_miss_answers_a_plain_request_and_back(server):
    """The stored result is neutral: a stream's result answers a non-streamed request, and the
    other way round, through each one's own renderer."""
    path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
    _, streamed, _ = call(server, path, {**body, "stream": True})
    mark, whole, _ = call(server, path, body)
    assert mark == "HIT" and whole["choices"][0]["message"]["content"] == merged(streamed)[0]["text"]


def test_current_fields_are_accepted_and_headers_sent(server):
    body = {"messages": ASK, "max_tokens": 2, "prompt_cache_key": "conv-1", "safety_identifier": "u-hash",
            "stream": True, "stream_options": {"include_obfuscation": False, "include_usage": True}}
    mark, events, response = call(server, "/v1/chat/completions", body)
    assert events[-1] is None and events[-2]["usage"]["completion_tokens"] == 2
    assert len(response.headers["x-request-id"]) >= 16
    with httpx.Client(base_url=server.base_url, timeout=600) as client:
        refused = client.post("/v1/chat/completions", json={"model": "light", "messages": ASK, "reasoning_effort": "low"})
        models = client.get("/v1/models").json()
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "reasoning_effort"
    assert refused.headers["x-request-id"]
    light = next(m for m in models["data"] if m["id"] == "light")
    assert light["context_length"] == 2048
