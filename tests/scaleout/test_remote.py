"""Remote tiers end to end: a front llmservice relaying to a second llmservice process (the
shared `llm_server`) and to `python -m llama_cpp.server`, driven by the openai SDK."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import httpx
import openai
import pytest

from inference.admission import QUEUE_FULL
from tests.server import HTTP_TIMEOUT

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": False},
    },
}


DISCONNECT_MAX_TOKENS = 600
NO_END_OF_TEXT = {"0": -100, "2": -100}  # SmolLM2's <|endoftext|> and <|im_end|>: it never ends by itself


@pytest.fixture(scope="module")
def sdk(front):
    return openai.OpenAI(base_url=front.base_url + "/v1", api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)


def hello(**kwargs):
    return dict(messages=[{"role": "user", "content": "Write a long story about a dragon."}], **kwargs)


@pytest.mark.parametrize("tier", ["big", "foreign"])
def test_stream_relayed_chunk_by_chunk(sdk, front, llm_server, tier):
    """The first chunk reaches the client while the upstream is still generating: not buffered."""
    stream = sdk.chat.completions.create(model=tier, stream=True, max_tokens=48, temperature=0.8, **hello())
    texts, running_at_first = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if running_at_first is None and tier == "big":
                running_at_first = llm_server.tier_status("light")["running"]
            texts.append(chunk.choices[0].delta.content)
    assert len(texts) > 10  # one of ours per upstream piece
    assert chunk.model == tier
    if tier == "big":
        assert running_at_first == 1  # the upstream was mid-generation when our first chunk arrived


def test_non_streamed_answer_and_usage(sdk):
    answer = sdk.chat.completions.create(model="big", max_tokens=8, temperature=0.5, **hello())
    assert answer.model == "big" and answer.choices[0].message.content
    assert answer.usage.completion_tokens == 8 and answer.usage.prompt_tokens > 0


def test_completions_through(sdk):
    answer = sdk.completions.create(model="big", prompt="Once upon a time", max_tokens=6, temperature=0.5)
    assert answer.model == "big" and answer.choices[0].text and answer.choices[0].finish_reason == "length"


@pytest.mark.parametrize("tier", ["big", "foreign"])
def test_forced_tool_call_through(sdk, tier):
    answer = sdk.chat.completions.create(
        model=tier, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=60, temperature=0,
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_json_schema_through(sdk):
    answer = sdk.chat.completions.create(
        model="big", messages=[{"role": "user", "content": "A person, as JSON."}], max_tokens=80, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}},
    )
    person = json.loads(answer.choices[0].message.content)
    assert set(person) == {"name", "age"}


# The upstream holds a non-strict schema only to what it can enforce: `not` is relaxed (named in
# X-Schema-Relaxed), so its answer, a JSON string, never matches this schema.
UNMATCHABLE = {"type": "string", "maxLength": 20, "not": {"type": "string"}}


def unmatchable_request(tier: str, stream: bool) -> dict:
    return {"model": tier, "messages": [{"role": "user", "content": "A word."}], "max_tokens": 30, "temperature": 0.7,
            "stream": stream,
            "response_format": {"type": "json_schema", "json_schema": {"name": "word", "schema": UNMATCHABLE}}}


def test_trusted_upstream_answer_relayed(front):
    with front.client() as http:
        response = http.post("/v1/chat/completions", json=unmatchable_request("big", False))
    assert response.status_code == 200
    assert isinstance(json.loads(response.json()["choices"][0]["message"]["content"]), str)


@pytest.mark.parametrize("stream", [False, True])
def test_untrusted_upstream_answer_checked(front, stream):
    """With trust_json_schema off, an answer that does not match the schema is an error, and
    none of it reaches the client."""
    with front.client() as http:
        response = http.post("/v1/chat/completions", json=unmatchable_request("untrusted", stream))
    if stream:
        events = [json.loads(line[6:]) for line in response.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        errors = [e["error"] for e in events if "error" in e]
        contents = [e["choices"][0]["delta"].get("content") for e in events if e.get("choices")]
        assert len(errors) == 1 and errors[0]["code"] == "upstream_error"
        assert not any(contents)
    else:
        assert response.status_code == 502
        errors = [response.json()["error"]]
    assert "does not match the requested json_schema" in errors[0]["message"]


def test_upstream_4xx_passed_through(front):
    """A request the upstream refuses (the client's mistake) keeps its status and envelope."""
    with front.client() as http:
        response = http.post("/v1/chat/completions", json={**hello(), "model": "big", "functions": [{"name": "f"}]})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "functions"
    assert response.json()["error"]["code"] == "unsupported_parameter"


def test_embeddings_and_rerank_through(sdk, front):
    vectors = sdk.embeddings.create(model="bigembed", input=["a cat", "a dog"])
    assert vectors.model == "bigembed" and len(vectors.data) == 2 and len(vectors.data[0].embedding) == 384
    with front.client() as http:
        ranked = http.post("/v1/rerank", json={"model": "bigrerank", "query": "cats", "documents": ["a cat", "stocks"]})
    assert ranked.status_code == 200 and len(ranked.json()["results"]) == 2


def test_responses_through(sdk):
    response = sdk.responses.create(model="big", input="Say hi.", max_output_tokens=16, temperature=0.5)
    assert response.model == "big" and response.output_text
    events = [e.type for e in sdk.responses.create(model="big", input="Say hi.", max_output_tokens=16, stream=True)]
    assert events[0] == "response.created" and events[-1] in ("response.completed", "response.incomplete")


def test_cache_in_front(front):
    """A deterministic request to a remote tier is answered from our cache the second time."""
    body = {**hello(), "model": "big", "max_tokens": 6, "temperature": 0}
    with front.client() as http:
        first, second = http.post("/v1/chat/completions", json=body), http.post("/v1/chat/completions", json=body)
        streamed = http.post("/v1/chat/completions", json={**body, "stream": True})
    assert (first.headers["X-Cache"], second.headers["X-Cache"], streamed.headers["X-Cache"]) == ("MISS", "HIT", "HIT")
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]


def test_upstream_down_is_502_and_marked_down(front, sdk):
    with front.client() as http:
        for _ in range(2):
            response = http.post("/v1/chat/completions", json={**hello(), "model": "down"})
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "upstream_error"
        health = http.get("/health").json()["tiers"]
        models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
        third = http.post("/v1/chat/completions", json={**hello(), "model": "down"})
    assert health["down"]["upstream"] == "down" and health["down"]["state"] == "failed"
    assert models["down"]["upstream"] == "down"
    assert "marked down" in third.json()["error"]["message"]  # the breaker answers at once
    # the other tiers keep working, local and remote
    assert sdk.chat.completions.create(model="light", max_tokens=4, **hello()).choices[0].message.content
    assert sdk.chat.completions.create(model="big", max_tokens=4, **hello()).choices[0].message.content
    with front.client() as http:
        assert http.get("/health").json()["tiers"]["big"]["upstream"] == "up"


def test_slow_upstream_is_504(front):
    with front.client() as http:
        response = http.post("/v1/chat/completions", json={**hello(), "model": "slow"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_client_disconnect_reaches_upstream(front, llm_server):
    """Closing our stream mid-answer stops the upstream's generation promptly: the upstream (told
    to write DISCONNECT_MAX_TOKENS tokens, its end-of-text tokens banned) logs, under our request
    id, that the client cancelled it after only a few of them. A front that kept the upstream's
    stream open (or kept reading it) would let it write them all, and no such line would come."""
    request_id = f"disconnect-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=front.base_url, timeout=HTTP_TIMEOUT) as http:
        with http.stream("POST", "/v1/chat/completions", headers={"X-Request-ID": request_id},
                         json={**hello(), "model": "big", "max_tokens": DISCONNECT_MAX_TOKENS, "temperature": 0.8,
                               "logit_bias": NO_END_OF_TEXT, "stream": True}) as response:
            contents = 0
            for line in response.iter_lines():
                contents += '"content"' in line
                if contents == 3:
                    break
            assert contents == 3
    # the upstream logs under our request id (the front passes it on) why its generation ended
    cancelled = f"[{request_id}]: light: generation cancelled by the client after "
    log = llm_server.wait_for_log(cancelled)
    tokens = int(re.search(re.escape(cancelled) + r"(\d+) tokens", log).group(1))
    assert tokens < DISCONNECT_MAX_TOKENS // 4  # stopped within a few tokens of the client leaving, not at the end


def test_admission_limit_applies_to_remote_tier(front, held_upstream):
    """The tier's admission gate in front of its upstream (a stalled fake): with one request
    running (max_connections 1) and none allowed to wait (max_waiting 0), the next is a 429 with
    the envelope and Retry-After, as a local tier's would be, without reaching the upstream."""
    accepted = len(held_upstream.connections)
    first: dict = {}

    def hold() -> None:
        with front.client() as http:
            first["response"] = http.post("/v1/chat/completions", json={**hello(), "model": "queued"})

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        deadline = time.monotonic() + 60
        while len(held_upstream.connections) == accepted and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(held_upstream.connections) == accepted + 1  # the first request is running upstream
        with front.client(timeout=30) as http:  # refused at once; without the gate it would hang
            refused = http.post("/v1/chat/completions", json={**hello(), "model": "queued"})
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert error["message"] == QUEUE_FULL.format(tier="queued", waiting=0, limit=0, retry=refused.headers["Retry-After"])
        assert len(held_upstream.connections) == accepted + 1  # the refused one never went upstream
    finally:
        held_upstream.drop()  # the first request's upstream breaks off: a 502, and its slot is free
        holder.join(timeout=HTTP_TIMEOUT)
    assert first["response"].status_code == 502


def _stream_lines(http: httpx.Client, model: str) -> list[str]:
    with http.stream("POST", "/v1/chat/completions",
                     json={**hello(), "model": model, "temperature": 0.7, "stream": True}) as response:
        assert response.status_code == 200
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def _content(lines: list[str]) -> str:
    chunks = [json.loads(line) for line in lines if line != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))


def test_relayed_streams_reuse_one_upstream_connection(front, scripted_upstream):
    """Streams relayed one after another share one connection to the upstream (a kept-alive
    connection is reused only once its chunked body was read to the end, after [DONE])."""
    before = scripted_upstream.connections
    with front.client() as http:
        answers = [_content(_stream_lines(http, "scripted")) for _ in range(3)]
    assert answers == ["Hello scripted world"] * 3
    assert scripted_upstream.connections - before <= 1


@pytest.mark.parametrize(("tier", "says"), [("broken", "broke off its answer"), ("stalled", "sent nothing for 1 s")])
def test_upstream_failing_mid_stream_ends_ours_with_an_error(front, tier, says):
    """A stream the upstream breaks off (or stops feeding for read_timeout) after its first chunk:
    the client has that chunk, then an error event naming what happened, then the end (a stream
    left hanging would fail the client's read timeout)."""
    with front.client() as http:
        lines = _stream_lines(http, tier)
    errors = [json.loads(line)["error"] for line in lines if line != "[DONE]" and "error" in json.loads(line)]
    assert _content([line for line in lines if '"error"' not in line]) == "Hello"
    assert len(errors) == 1 and says in errors[0]["message"], lines
