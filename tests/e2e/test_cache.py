"""The response cache on a real server with the real SmolLM2, driven by the official openai SDK."""

import httpx
import pytest
from openai import OpenAI

from tests.server import LiveServer

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("cache"), env={"CACHE_PERSIST_TO_DISK": "true"})
    server.start()
    yield server
    server.stop()


def client(server) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def ask(server, headers=None, **extra):
    raw = client(server).chat.completions.with_raw_response.create(
        model="light", messages=extra.pop("messages", QUESTION), temperature=0, max_tokens=5,
        extra_headers=headers or {}, **extra,
    )
    return raw.headers["x-cache"], raw.parse()


def test_hit_after_miss_then_streamed_from_the_cache(server):
    first_outcome, first = ask(server)
    second_outcome, second = ask(server)
    assert (first_outcome, second_outcome) == ("MISS", "HIT")
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage.completion_tokens == first.usage.completion_tokens

    with client(server).chat.completions.with_streaming_response.create(
        model="light", messages=QUESTION, temperature=0, max_tokens=5, stream=True
    ) as response:
        assert response.headers["x-cache"] == "HIT"
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
    assert text == first.choices[0].message.content


def test_bypass_headers(server):
    question = [{"role": "user", "content": "Name an animal."}]
    assert ask(server, {"Cache-Control": "no-store"}, messages=question)[0] == "MISS"
    assert ask(server, {"Cache-Control": "no-cache"}, messages=question)[0] == "MISS"  # not read, but written
    assert ask(server, {"Cache-Control": "no-cache"}, messages=question)[0] == "MISS"
    assert ask(server, messages=question)[0] == "HIT"


def test_the_cache_survives_a_restart(server):
    _, before = ask(server, messages=[{"role": "user", "content": "Name a fruit."}])
    server.stop()
    server.start()
    assert httpx.get(server.base_url + "/health", timeout=120).json()["loaded"] == []  # a fresh process
    outcome, after = ask(server, messages=[{"role": "user", "content": "Name a fruit."}])
    assert outcome == "HIT"
    assert after.choices[0].message.content == before.choices[0].message.content
