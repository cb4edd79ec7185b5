"""The API handler's lean way for the hot operations (openai_api/handler.py), driven through the
real ASGI application as uvicorn drives it.

The hot POSTs skip URL resolving, the middleware chain and the request signals, and call their
django-ninja view directly. What a client gets must not change: each request below is answered
on the lean way and then again with the lean way switched off (Django's full request path), and
the two answers must be the same. The fake backend (tests/fakes.py) stands in for a chat model
(this tests the HTTP layer); embeddings run the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from django.core import signals

from openai_api import handler
from registry.models import Tier
from tests.helpers import unload_everything
from tests.llmservice.test_guards import JSON, call

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hi"}]
# What differs between two answers to the same request: ids and timestamps.
VARIABLE = re.compile(rb'"(id|created|created_at|response_id|item_id|call_id)":\s*("[^"]*"|\d+)')


@pytest.fixture
def tiers(minilm_path):
    Tier.objects.create(name="fake", backend="fake", model_path="fake.bin")
    Tier.objects.create(name="slow", backend="fake", model_path="slow")  # 0.02 s per token
    Tier.objects.create(name="embed", kind="embedding", backend="sentence_transformers", model_path=minilm_path)
    yield
    unload_everything()


@pytest.fixture
def started(db):
    """How many times request_started was sent."""
    seen = []

    def count(**kwargs):
        seen.append(kwargs)

    signals.request_started.connect(count)
    yield seen
    signals.request_started.disconnect(count)


async def both_ways(monkeypatch, path, body: bytes, headers=JSON):
    """(lean answer, full-path answer): (status, content type, body with ids and times blanked)."""
    answers = []
    for lean in (True, False):
        if not lean:
            monkeypatch.setattr(handler, "LEAN_OPERATIONS", frozenset())
        status, response_headers, content = await call(path, body=body, headers=headers)
        content_type = {k.lower(): v for k, v in response_headers.items()}.get(b"content-type")
        answers.append((status, content_type, VARIABLE.sub(rb'"\1": "-"', content)))
    monkeypatch.undo()
    return answers


def payload(**fields) -> bytes:
    return json.dumps(fields).encode()


BAD_BODIES = {
    "not JSON": b'{"model": ',
    "a list": b"[]",
    "empty object": b"{}",
    "NaN": b'{"model": "fake", "messages": [], "temperature": NaN}',
    "lone surrogate": b'{"model": "fake", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "too deep": b'{"model": "fake", "metadata": ' + b'{"a": ' * 200 + b"1" + b"}" * 201,
    "not UTF-8": b'{"model": "\xff"}',
    "unknown field": payload(model="fake", messages=HELLO, bogus=1),
    "wrong type": payload(model="fake", messages=HELLO, temperature="hot"),
    "unknown tier": payload(model="nope", messages=HELLO),
    "refused parameter": payload(model="fake", messages=HELLO, verbosity="high"),
}


@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/rerank"])
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_requests_get_the_same_error_either_way(tiers, monkeypatch, path, case):
    lean, full = await both_ways(monkeypatch, path, BAD_BODIES[case])
    assert lean == full
    status, content_type, body = lean
    assert 400 <= status < 500 and content_type == b"application/json"
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("path, body", [
    (CHAT, payload(model="fake", messages=HELLO, max_tokens=5)),
    (CHAT, payload(model="fake", messages=HELLO, max_tokens=5, stream=True, stream_options={"include_usage": True})),
    ("/v1/completions", payload(model="fake", prompt="Once", max_tokens=4, n=2)),
    ("/v1/responses", payload(model="fake", input="hi", max_output_tokens=5, store=False)),
    ("/v1/responses", payload(model="fake", input="hi", max_output_tokens=5, store=False, stream=True)),
    ("/v1/embeddings", payload(model="embed", input=["one text", "and another"])),
], ids=["chat", "chat-stream", "completions", "responses", "responses-stream", "embeddings"])
async def test_answers_are_the_same_either_way(tiers, monkeypatch, path, body):
    lean, full = await both_ways(monkeypatch, path, body)
    assert lean[0] == 200 and lean == full


async def test_only_the_hot_operations_skip_the_request_signals(tiers, started):
    assert (await call(CHAT, body=payload(model="fake", messages=HELLO, max_tokens=2), headers=JSON))[0] == 200
    assert (await call("/v1/embeddings", body=payload(model="embed", input="x"), headers=JSON))[0] == 200
    assert started == []
    assert (await call("/v1/models", method="GET"))[0] == 200
    assert (await call("/v1/chat/completions/", body=b"{}", headers=JSON))[0] == 404  # not an exact lean path
    assert len(started) == 2


async def test_other_methods_on_a_hot_path_keep_the_envelope(tiers):
    status, _, content = await call(CHAT, method="GET")
    assert status == 405
    assert json.loads(content)["error"]["code"] == "method_not_allowed"


async def test_a_stream_the_client_leaves_releases_what_it_holds(tiers):
    """The response's closers run on the lean way too: a cached stream abandoned mid-way frees
    its single-flight entry (`on_response_close`), so the next identical request is not left
    waiting for it."""
    from openai_api.cache import response_cache

    body = payload(model="slow", messages=HELLO, max_tokens=50, temperature=0, stream=True)
    first_chunk = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    chunks = []

    async def receive():
        if messages:
            return messages.pop(0)
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.body" and message.get("body"):
            chunks.append(message["body"])
            first_chunk.set()

    from llmservice.asgi import http_application

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": CHAT, "raw_path": CHAT.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), *JSON], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}
    await asyncio.wait_for(http_application(scope, receive, send), 30)
    for _ in range(10):
        await asyncio.sleep(0)  # the closers' callbacks run on the loop
    assert chunks and b"[DONE]" not in b"".join(chunks)  # left mid-way
    assert response_cache.inflight == {}


@pytest.fixture
def keys(settings, tiers):
    """API keys on: one for every tier (2 requests a minute), one for `embed` only."""
    from openai_api import ratelimit
    from openai_api.usage import usage_buffer
    from registry.services import api_key_create

    settings.API_KEYS_REQUIRED = True
    settings.RATE_LIMITER = "openai_api.ratelimit.InProcessRateLimiter"
    ratelimit._limiter = None
    usage_buffer.discard()
    _, every = api_key_create(name="every", requests_per_minute=2)
    _, embed_only = api_key_create(name="embed-only", tiers=[Tier.objects.get(name="embed")])
    yield every, embed_only
    usage_buffer.discard()
    ratelimit._limiter = None


def with_key(secret):
    return [*JSON, (b"authorization", f"Bearer {secret}".encode())]


@pytest.mark.parametrize("who", ["no key", "wrong key", "out of scope"])
async def test_refused_keys_get_the_same_error_either_way(keys, monkeypatch, who):
    headers = {"no key": JSON, "wrong key": with_key("sk-llm-not-a-real-key-at-all"),
               "out of scope": with_key(keys[1])}[who]
    lean, full = await both_ways(monkeypatch, CHAT, payload(model="fake", messages=HELLO, max_tokens=2), headers)
    assert lean == full and lean[0] == (403 if who == "out of scope" else 401)


async def test_a_keys_requests_are_counted_once_on_the_lean_way(keys):
    body = payload(model="fake", messages=HELLO, max_tokens=2)
    statuses = [(await call(CHAT, body=body, headers=with_key(keys[0])))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]
