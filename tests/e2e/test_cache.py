"""The response cache on a real server with the real SmolLM2, driven by the official openai SDK."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI

from tests.e2e.live import EOG_BAN
from tests.helpers import wait_until
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


def stats(server) -> dict:
    return server.internal("GET", "/cache/stats")


def test_identical_requests_arriving_together_generate_once(server):
    body = {"model": "light", "messages": [{"role": "user", "content": "Count to a hundred."}], "temperature": 0,
            "max_tokens": 100, "logit_bias": EOG_BAN}
    # An earlier test's request (a stream its client cut off) may still be finishing: count from idle.
    def idle() -> bool:
        tier = server.tier_status("light")
        return not tier["running"] and not tier["queued"]

    wait_until(idle, "the tier to be idle")
    before = server.tier_status("light")["requests"]
    with server.client() as http, ThreadPoolExecutor(2) as pool:
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as leader:
            assert leader.headers["x-cache"] == "MISS"
            lines = leader.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            followers = [pool.submit(http.post, "/v1/chat/completions", json=body) for _ in range(2)]
            # Both wait for the leader's answer instead of generating their own.
            wait_until(lambda: stats(server)["waiting"] == 2, "the followers to wait for the leader")
            streamed = [first, *(line for line in lines if line.startswith("data: "))]
        replies = [f.result(timeout=300) for f in followers]
    text = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
        for line in streamed if line != "data: [DONE]"
    )
    assert [r.headers["x-cache"] for r in replies] == ["HIT", "HIT"]
    assert [r.json()["choices"][0]["message"]["content"] for r in replies] == [text, text]
    assert server.tier_status("light")["requests"] - before == 1  # generated once
    assert stats(server)["generating"] == 0


def test_a_stream_cut_off_by_the_client_is_not_stored(server):
    body = {"model": "light", "messages": [{"role": "user", "content": "Tell me a long story."}], "temperature": 0,
            "max_tokens": 400, "logit_bias": EOG_BAN, "stream": True}
    cancelled = server.log().count("generation cancelled by the client")
    entries = stats(server)["database_entries"]
    with server.client() as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.headers["x-cache"] == "MISS"
            lines = r.iter_lines()
            assert [next(lines) for _ in range(4)]
        wait_until(lambda: server.log().count("generation cancelled by the client") > cancelled, "the cancellation")
        assert stats(server)["database_entries"] == entries
        with http.stream("POST", "/v1/chat/completions", json=body) as again:
            assert again.headers["x-cache"] == "MISS"  # nothing was stored to answer it


def sse_frames(raw: bytes) -> list[dict | None]:
    """Every frame of an SSE body, which must be exactly `data: <json>\\n\\n` frames ending in [DONE]."""
    assert raw.endswith(b"data: [DONE]\n\n")
    frames = raw[: -len(b"\n\n")].split(b"\n\n")
    assert all(f.startswith(b"data: ") and b"\n" not in f for f in frames)
    return [None if f == b"data: [DONE]" else json.loads(f[6:]) for f in frames]


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_streamed_hit_is_framed_exactly_like_a_live_stream(server, include_usage):
    content = f"Name a bird ({include_usage})."
    body = {"model": "light", "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": 6,
            "stream": True, **({"stream_options": {"include_usage": True}} if include_usage else {})}
    answers = {}
    with server.client() as http:
        for expected in ("MISS", "HIT"):
            response = http.post("/v1/chat/completions", json=body)
            assert response.headers["x-cache"] == expected
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            answers[expected] = sse_frames(response.content)
    live, hit = answers["MISS"], answers["HIT"]
    assert live[-1] is None and hit[-1] is None
    live_text = "".join(c["choices"][0]["delta"].get("content") or "" for c in live[:-1] if c["choices"])
    live_finish = [c["choices"][0]["finish_reason"] for c in live[:-1] if c["choices"]][-1]
    base = {"object": "chat.completion.chunk", "model": "light", "system_fingerprint": live[0]["system_fingerprint"]}
    fields = {"id", "object", "created", "model", "system_fingerprint", "choices"} | ({"usage"} if include_usage else set())
    assert all(set(c) == fields for c in live[:-1] + hit[:-1])  # the same fields as the live chunks
    assert len({c["id"] for c in hit[:-1]}) == 1 and hit[0]["id"] != live[0]["id"]
    assert all(c | base == c for c in hit[:-1])

    def choice(delta, finish_reason=None):
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    expected = [choice({"role": "assistant", "content": ""}), choice({"content": live_text}), choice({}, live_finish)]
    assert [c["choices"] for c in hit[:3]] == expected
    if include_usage:
        assert all(c["usage"] is None for c in hit[:3])
        assert hit[3]["choices"] == [] and hit[3]["usage"] == live[-2]["usage"] and live[-2]["choices"] == []
        assert len(hit) == 5
    else:
        assert len(hit) == 4
