"""The request's deadline (REQUEST_TIMEOUT_SECONDS) on remote tiers, as on local ones: an upstream
that keeps trickling or says nothing is cut there, its stream closed, and the cut answer is
never cached. The upstream is `ScriptedUpstream`, a fake (tests/scaleout/servers.py)."""

from __future__ import annotations

import json
import time

import pytest

from tests.scaleout.servers import started_front

DEADLINE = 1.5  # seconds: the front's REQUEST_TIMEOUT_SECONDS


@pytest.fixture(scope="module")
def front(tmp_path_factory, scripted_upstream):
    url = scripted_upstream.base_url
    env = {
        "TIER_NAMES": "trickle,mute,json",
        "CACHE_REQUESTS": "deterministic",
        "REQUEST_TIMEOUT_SECONDS": str(DEADLINE),
        # one failure would mark the upstream down: a deadline must not count as one
        "TRICKLE_BACKEND": "remote", "TRICKLE_MODEL_PATH": "trickle", "TRICKLE_BASE_URL": url,
        "TRICKLE_READ_TIMEOUT": "30", "TRICKLE_RETRIES": "0", "TRICKLE_BREAKER_FAILURES": "1",
        "MUTE_BACKEND": "remote", "MUTE_MODEL_PATH": "mute", "MUTE_BASE_URL": url,
        "MUTE_READ_TIMEOUT": "30", "MUTE_RETRIES": "0", "MUTE_BREAKER_FAILURES": "1",
        # embeddings from an upstream that never answers
        "JSON_BACKEND": "remote", "JSON_KIND": "embedding", "JSON_MODEL_PATH": "mute", "JSON_BASE_URL": url,
        "JSON_READ_TIMEOUT": "30", "JSON_RETRIES": "0",
    }
    server = started_front(tmp_path_factory.mktemp("deadline-front"), env)
    yield server
    server.stop()


def chat(model: str, stream: bool) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "stream": stream}


def events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


def wait_for(condition, seconds: float = 10.0) -> bool:
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_trickling_answer_is_cut_at_the_deadline(front, scripted_upstream):
    closed = scripted_upstream.closed_by_client
    with front.client(timeout=30) as http:
        response = http.post("/v1/chat/completions", json=chat("trickle", False))
        assert response.status_code == 200, response.text
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "length"
        assert choice["message"]["content"].startswith("Hello more")
        assert wait_for(lambda: scripted_upstream.closed_by_client > closed)  # the upstream heard it
        again = http.post("/v1/chat/completions", json=chat("trickle", False))  # not cached, not marked down
        assert again.status_code == 200 and again.headers["x-cache"] == "MISS"


def test_a_trickling_stream_ends_with_length_at_the_deadline(front):
    with front.client(timeout=30) as http:
        response = http.post("/v1/chat/completions", json=chat("trickle", True))
    assert response.status_code == 200
    chunks = events(response.text)
    assert not [c for c in chunks if "error" in c]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "length"
    assert response.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_saying_nothing_is_a_504_at_the_deadline(front, stream):
    with front.client(timeout=30) as http:
        response = http.post("/v1/chat/completions", json=chat("mute", stream))
        models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    if stream:  # the response had started (the upstream's headers came): the error is in-band
        assert response.status_code == 200
        errors = [c["error"] for c in events(response.text) if "error" in c]
    else:
        assert response.status_code == 504
        errors = [response.json()["error"]]
    assert len(errors) == 1 and errors[0]["code"] == "timeout"
    assert models["mute"]["upstream"] == "up"  # a deadline is no failure of the upstream's


def test_a_remote_embedding_waits_no_longer_than_the_deadline(front):
    with front.client(timeout=30) as http:
        response = http.post("/v1/embeddings", json={"model": "json", "input": "x"})
    assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
