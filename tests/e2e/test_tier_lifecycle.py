"""Tiers changing under a running server (real SmolLM2, real uvicorn): an edit retiring a model
mid-request, the `retiring` and `failed` states in /v1/models, and a tier's default `stop`.

Tiers are edited as an operator would, with `manage.py sync_tiers --force` against the server's
database; the server reads it per request.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.e2e.live import EOG_BAN
from tests.helpers import wait_until
from tests.server import ROOT, LiveServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory, smollm2_path):
    env = {
        "CACHE_REQUESTS": "none",  # every answer here is generated, never replayed
        "TIER_NAMES": "light,stopper,broken",
        "STOPPER_MODEL_PATH": smollm2_path,
        "BROKEN_MODEL_PATH": str(tmp_path_factory.mktemp("nothing") / "missing.gguf"),
        "INTERNAL_URL": "",  # filled with the server's address: sync_tiers tells it to re-read its tiers
    }
    server = LiveServer(tmp_path_factory.mktemp("lifecycle"), env=env).start()
    yield server
    server.stop()


def sync_tiers(server: LiveServer, **env: str) -> None:
    """Overwrite the tiers from the server's environment plus `env`, as an operator would."""
    subprocess.run(
        [sys.executable, "manage.py", "sync_tiers", "--force"],
        cwd=ROOT, env={**server.env, **env}, check=True, capture_output=True, timeout=120,
    )


def card(server, name: str) -> dict:
    return httpx.get(f"{server.base_url}/v1/models/{name}", timeout=120).json()


def data_lines(lines) -> list[str]:
    return [line for line in lines if line.startswith("data: ")]


def test_a_tier_edited_mid_request_finishes_it_on_the_old_model_and_the_next_uses_the_new(server):
    sync_tiers(server, LIGHT_N_CTX="256")
    payload = {"model": "light", "prompt": "Count: 1, 2, 3,", "max_tokens": 60, "temperature": 0, "logit_bias": EOG_BAN}
    with server.client() as http:
        alone = http.post("/v1/completions", json=payload).json()["choices"][0]["text"]
        unloads = server.log().count("Unloaded light model")
        with http.stream("POST", "/v1/completions", json={**payload, "stream": True}) as stream:
            lines = stream.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            sync_tiers(server, LIGHT_N_CTX="1024")  # a load parameter changes: the loaded model retires
            long_prompt = {"model": "light", "prompt": "hello " * 400, "max_tokens": 2}  # about 400 tokens
            bigger = http.post("/v1/completions", json=long_prompt)
            assert bigger.status_code == 200, bigger.text  # only the new n_ctx 1024 instance can take it
            assert bigger.json()["usage"]["prompt_tokens"] > 256
            rest = data_lines(lines)
    chunks = [json.loads(line[6:]) for line in [first, *rest] if line != "data: [DONE]"]
    assert rest[-1] == "data: [DONE]" and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks) == alone  # finished, unchanged, on the old model
    wait_until(lambda: server.log().count("Unloaded light model") > unloads, "the old model to be unloaded")
    assert card(server, "light")["state"] == "ready"


def test_a_tier_unloaded_mid_request_is_retiring_until_the_request_ends(server):
    payload = {"model": "light", "prompt": "Count: 1, 2, 3,", "max_tokens": 1500, "logit_bias": EOG_BAN, "stream": True}
    with server.client() as http:
        with http.stream("POST", "/v1/completions", json=payload) as stream:
            lines = stream.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            assert server.internal("POST", "/unload", {"tiers": ["light"]})["unloaded"] == ["light"]
            retiring = card(server, "light")
            assert (retiring["state"], retiring["loaded"]) == ("retiring", False)
            health = http.get("/health").json()["tiers"]["light"]
            usage = health.pop("kv_cache_usage")  # the batched engine's cells in use: the running request's
            assert health == {"loaded": False, "state": "retiring", "running": 1, "queued": 0, "slots": 4}
            assert 0 < usage < 0.25
            assert next(line for line in lines if line.startswith("data: "))  # its request goes on
        # the client left: the request ends, then the model is closed
    wait_until(lambda: card(server, "light")["state"] == "unloaded", "the retiring model to unload")


def test_a_tier_whose_model_cannot_load_is_503_and_failed(server):
    body = {"model": "broken", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    response = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "model file not found" in error["message"]
    failed = card(server, "broken")
    assert (failed["state"], failed["loaded"], failed["load_time"]) == ("failed", False, None)
    assert card(server, "stopper")["state"] in ("unloaded", "ready")  # the others are unaffected


def test_a_tiers_default_stop_applies_unless_the_request_sets_its_own(server):
    question = {"messages": [{"role": "user", "content": "Name three colours."}], "temperature": 0, "max_tokens": 24}
    with server.client() as http:
        full = http.post("/v1/chat/completions", json={"model": "light", **question}).json()["choices"][0]["message"]["content"]
        words = full.split()
        assert len(words) > 6, full
        sync_tiers(server, STOPPER_STOP=json.dumps([words[3]]))
        default = http.post("/v1/chat/completions", json={"model": "stopper", **question}).json()["choices"][0]
        own = http.post("/v1/chat/completions", json={"model": "stopper", "stop": words[5], **question}).json()["choices"][0]
        streamed = http.post("/v1/chat/completions", json={"model": "stopper", "stream": True, **question}).text
    assert default["message"]["content"] == full[: full.index(words[3])] and default["finish_reason"] == "stop"
    assert own["message"]["content"] == full[: full.index(words[5])] and own["finish_reason"] == "stop"
    events = [json.loads(line[6:]) for line in streamed.split("\n\n") if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == default["message"]["content"]
