"""Idle unload (keep_alive) and MAX_LOADED_MODELS against a real server (uvicorn, the real SmolLM2),
driven by httpx and the official openai client. Waits are bounded; assertions are about what
happened (unloaded or not, which model was evicted), never how fast."""

import threading

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inference.bundled import smollm2_gguf
from tests.e2e.live import EOG_BAN
from tests.helpers import wait_until
from tests.server import HTTP_TIMEOUT, LiveServer

pytestmark = pytest.mark.e2e

TOKEN = "keep-alive-internal-token"
UNLOAD_WAIT = 120  # bounded: a busy machine is slow, the assertion is that it happens


def chat(model: str = "light", max_tokens: int = 3, content: str = "Say hi", **extra) -> dict:
    """Cacheable (temperature 0): each test that needs the model to run sends its own `content`."""
    return {"model": model, "temperature": 0, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}], **extra}


def health(server: LiveServer) -> dict:
    with server.client() as client:
        return client.get("/health").json()


def models_loaded(server: LiveServer) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "llmservice:models_loaded")
    return family.samples[0].value


def wait_unloaded(server: LiveServer, tier: str) -> dict:
    return wait_until(lambda: (h := health(server))["tiers"][tier]["state"] == "unloaded" and h,
                      f"{tier} to unload", timeout=UNLOAD_WAIT, interval=0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The default keep_alive is long (10 minutes); a request may ask for at most 2 seconds more."""
    env = {"KEEP_ALIVE": "10m", "KEEP_ALIVE_MAX": "2s", "TIER_NAMES": "light,embed,rerank", "INTERNAL_TOKEN": TOKEN}
    server = LiveServer(tmp_path_factory.mktemp("keep-alive"), env=env)
    server.env["INTERNAL_URL"] = server.base_url
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=HTTP_TIMEOUT)


def test_the_tiers_keep_alive_keeps_it_loaded_with_a_countdown_everywhere(server, client):
    assert client.chat.completions.create(**chat()).choices[0].message.content is not None
    light = health(server)["tiers"]["light"]
    assert light["state"] == "ready" and light["keep_alive"] == 600.0
    assert 0 < light["unload_in_seconds"] <= 600
    assert models_loaded(server) == 1
    row = server.tier_status("light")  # /internal/status: what the status page and `manage.py status` render
    assert row["keep_alive"] == 600.0 and 0 < row["unload_in_seconds"] <= 600
    out = server.manage("status").stdout
    assert "UNLOADS IN" in out
    light_line = next(line for line in out.splitlines() if line.startswith("light "))
    assert light_line.rstrip().endswith("s") and "m" in light_line.split()[-1]  # e.g. 9m59s


def test_keep_alive_0_in_a_request_unloads_right_after_it(server, client):
    client.chat.completions.create(**chat(content="Unload after this"), extra_body={"keep_alive": 0})
    assert wait_unloaded(server, "light")["loaded"] == []
    assert models_loaded(server) == 0
    assert "light: idle for its keep_alive (0s): unloading" in server.log()
    # An unloaded tier loads again on the next request, with the tier's keep_alive again.
    assert client.completions.create(model="light", prompt="Load again", max_tokens=2, temperature=0).choices
    assert health(server)["tiers"]["light"]["keep_alive"] == 600.0


def test_a_requests_keep_alive_is_bounded_by_the_tiers_maximum(server, client):
    client.completions.create(model="light", prompt="An hour", max_tokens=2, temperature=0, extra_body={"keep_alive": "1h"})
    light = health(server)["tiers"]["light"]
    assert light["keep_alive"] == 2.0  # KEEP_ALIVE_MAX, not the hour asked for
    wait_unloaded(server, "light")
    # A negative keep_alive ("never") is bounded the same way.
    client.chat.completions.create(**chat(content="Forever"), extra_body={"keep_alive": -1})
    assert health(server)["tiers"]["light"]["keep_alive"] == 2.0
    wait_unloaded(server, "light")


def test_keep_alive_is_not_part_of_the_cache_key(server):
    body = chat(max_tokens=4, content="Cache me")
    with server.client() as http:
        first = http.post("/v1/chat/completions", json={**body, "keep_alive": "1s"})
        second = http.post("/v1/chat/completions", json={**body, "keep_alive": 0})
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["X-Cache"] == "MISS" and second.headers["X-Cache"] == "HIT"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/chat/completions", chat()),
        ("/v1/completions", {"model": "light", "prompt": "Hi", "max_tokens": 2}),
        ("/v1/embeddings", {"model": "embed", "input": "Hi"}),
        ("/v1/rerank", {"model": "rerank", "query": "q", "documents": ["a"]}),
    ],
)
@pytest.mark.parametrize("value", ["soon", "5 minutes", "1x", True, [1], "nan"])
def test_an_invalid_keep_alive_is_a_400_naming_it(server, path, body, value):
    with server.client() as http:
        response = http.post(path, json={**body, "keep_alive": value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "keep_alive" and error["type"] == "invalid_request_error"


# --- MAX_LOADED_MODELS ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_model_server(tmp_path_factory):
    """Two chat tiers on the same GGUF, room for one loaded model, models never unload when idle."""
    env = {"MAX_LOADED_MODELS": "1", "KEEP_ALIVE": "-1", "TIER_NAMES": "light,medium", "MEDIUM_MODEL_PATH": smollm2_gguf(),
           "QUEUE_MAX_WAIT_SECONDS": "900"}  # a waiting load is bounded by the queue wait: never reached here
    server = LiveServer(tmp_path_factory.mktemp("max-loaded"), env=env).start()
    yield server
    server.stop()


def test_loading_a_second_tier_unloads_the_least_recently_used_idle_one(one_model_server):
    server = one_model_server
    with server.client() as http:
        assert http.post("/v1/chat/completions", json=chat("light")).status_code == 200
        assert health(server)["loaded"] == ["light"]
        assert health(server)["tiers"]["light"]["unload_in_seconds"] is None  # KEEP_ALIVE=-1: never
        assert http.post("/v1/chat/completions", json=chat("medium")).status_code == 200
    wait_unloaded(server, "light")
    assert health(server)["loaded"] == ["medium"]
    assert models_loaded(server) == 1
    assert "Unloading light, the least recently used idle model, to load medium (MAX_LOADED_MODELS=1)" in server.log()


def test_a_busy_tier_is_never_evicted_the_next_one_waits(one_model_server):
    server = one_model_server
    with server.client() as http:
        assert http.post("/v1/chat/completions", json=chat("medium", content="Medium")).status_code == 200  # loaded, idle
    result = {}

    def light_request():
        with server.client() as http:
            result["light"] = http.post("/v1/chat/completions", json=chat("light", content="Light, waiting"))

    stream_body = chat("medium", max_tokens=60, stream=True, logit_bias=EOG_BAN)
    with server.client() as http, http.stream("POST", "/v1/chat/completions", json=stream_body) as stream:
        lines = stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # medium is generating now
        thread = threading.Thread(target=light_request)
        thread.start()
        server.wait_for_log("light waits to load: MAX_LOADED_MODELS=1 models are loaded and busy")
        tiers = health(server)["tiers"]
        assert tiers["medium"]["state"] == "ready" and tiers["light"]["state"] == "loading"
        rest = [line for line in lines if line.startswith("data: ")]
    thread.join(timeout=HTTP_TIMEOUT)
    assert rest[-1] == "data: [DONE]" and '"finish_reason":"length"' in "".join(rest).replace(" ", "")
    assert result["light"].status_code == 200  # loaded once medium was idle and could go
    assert "Unloading medium, the least recently used idle model, to load light" in server.log()
    assert health(server)["loaded"] == ["light"]
