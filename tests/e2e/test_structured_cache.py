"""A cached answer to a relaxed schema replays its X-Schema-Relaxed header (memory, and the
database after a restart), streamed or not. A real server with the response cache on."""

from __future__ import annotations

import httpx
import pytest

from tests.server import LiveServer

pytestmark = pytest.mark.e2e

SCHEMA = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3, "uniqueItems": True}},
    "required": ["tags"],
}
BODY = {
    "model": "light", "temperature": 0, "max_tokens": 40, "messages": [{"role": "user", "content": "Tags?"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
}
RELAXED = "uniqueItems at #/properties/tags"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("structured-cache"), env={"CACHE_PERSIST_TO_DISK": "true"})
    server.start()
    yield server
    server.stop()


def post(server, **extra) -> httpx.Response:
    return httpx.post(server.base_url + "/v1/chat/completions", json={**BODY, **extra}, timeout=300)


def test_a_cache_hit_replays_the_relaxed_header(server):
    first, second = post(server), post(server)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.headers["x-schema-relaxed"] == second.headers["x-schema-relaxed"] == RELAXED
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert "_llmservice_headers" not in second.text

    streamed = post(server, stream=True)
    assert streamed.headers["x-cache"] == "HIT" and streamed.headers["x-schema-relaxed"] == RELAXED
    assert "_llmservice_headers" not in streamed.text

    server.stop()
    server.start()  # memory is empty now: the hit comes from the database
    again = post(server)
    assert again.headers["x-cache"] == "HIT" and again.headers["x-schema-relaxed"] == RELAXED


def test_a_streamed_miss_stores_the_header_too(server):
    body = {**BODY, "messages": [{"role": "user", "content": "Other tags?"}], "stream": True}
    first = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=300)
    assert first.headers["x-cache"] == "MISS" and first.headers["x-schema-relaxed"] == RELAXED
    second = httpx.post(server.base_url + "/v1/chat/completions", json={**body, "stream": False}, timeout=300)
    assert second.headers["x-cache"] == "HIT" and second.headers["x-schema-relaxed"] == RELAXED
