"""Request ids, JSON access logs, /metrics and the operations commands against a real server
(uvicorn, the real SmolLM2), driven by httpx and the official openai client."""

import json
import os
import pty
import re
import subprocess
import sys

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.live import EOG_BAN
from tests.server import ROOT, LiveServer

pytestmark = pytest.mark.e2e

TOKEN = "observability-internal-token"
METRICS_TOKEN = "observability-metrics-token"
CHAT = {"model": "light", "temperature": 0, "max_tokens": 6, "messages": [{"role": "user", "content": "Say hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {
        "LOG_FORMAT": "json",
        "METRICS_TOKEN": METRICS_TOKEN,
        "AUTO_SHUTDOWN_MINUTES": "600",  # on, far away: the countdown is visible, never reached
        "INTERNAL_TOKEN": TOKEN,
    }
    server = LiveServer(tmp_path_factory.mktemp("observability"), env=env)
    server.env["INTERNAL_URL"] = server.base_url
    server.start()
    yield server
    server.stop()


def log_lines(server) -> list[dict]:
    """Every line the server logged, each parsed as JSON (a line that isn't JSON fails the test)."""
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def access_line(server, request_id: str) -> dict:
    def find():
        return [line for line in log_lines(server) if line["message"] == "request" and line["request_id"] == request_id]

    server.wait_for_log(f'"request_id": "{request_id}", "method"')
    (line,) = find()
    return line


def scrape(server) -> dict[tuple[str, tuple], float]:
    """The module server's /metrics, with its token."""
    response = httpx.get(server.base_url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text parsed by prometheus_client: (sample name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_request_id_is_echoed_generated_and_replaced_when_insane(server):
    with server.client() as client:
        echoed = client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "trace-abc.123"})
        generated = client.post("/v1/chat/completions", json=CHAT)
        insane = client.get("/v1/models", headers={"x-request-id": "two words\"and quotes"})
        not_found = client.get("/v1/nope")
    assert echoed.headers["x-request-id"] == "trace-abc.123"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", insane.headers["x-request-id"])
    assert not_found.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", not_found.headers["x-request-id"])


def test_every_log_line_is_json_and_the_access_line_has_its_fields(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    body = {**CHAT, "messages": [{"role": "user", "content": "Log this"}]}  # a MISS: generated now
    raw = client.chat.completions.with_raw_response.create(**body, extra_headers={"x-request-id": "json-line-1"})
    usage = raw.parse().usage
    line = access_line(server, "json-line-1")
    assert {k: line[k] for k in ("method", "path", "endpoint", "tier", "status", "cache", "api_key", "complete")} == {
        "method": "POST", "path": "/v1/chat/completions", "endpoint": "chat_completions", "tier": "light",
        "status": 200, "cache": "MISS", "api_key": "", "complete": True,
    }
    assert (line["prompt_tokens"], line["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert 0 < line["ttft_seconds"] <= line["total_seconds"]
    assert {"time", "level", "logger"} <= set(line) and line["logger"] == "llmservice.access"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(entry) for entry in log_lines(server))


def test_a_stream_is_logged_when_it_ends_and_a_hit_logs_the_cached_usage(server):
    body = {**CHAT, "messages": [{"role": "user", "content": "Stream it"}], "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body, timeout=120,
                      headers={"x-request-id": "stream-1"}) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    usage = chunks[-1]["usage"]
    line = access_line(server, "stream-1")
    assert line["complete"] is True and line["cache"] == "MISS"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert line["ttft_seconds"] is not None

    plain = {k: v for k, v in body.items() if k != "stream_options"}  # stream_options needs stream: true
    hit = httpx.post(server.base_url + "/v1/chat/completions", json={**plain, "stream": False}, timeout=120,
                     headers={"x-request-id": "stream-1-again"})
    assert hit.headers["x-cache"] == "HIT"
    again = access_line(server, "stream-1-again")
    assert again["cache"] == "HIT" and again["ttft_seconds"] is None
    assert again["completion_tokens"] == usage["completion_tokens"]


def test_the_owner_threads_lines_carry_the_request_id(server):
    payload = {"model": "light", "prompt": "Count: 1, 2,", "max_tokens": 1500, "temperature": 0,
               "logit_bias": EOG_BAN, "stream": True}
    with httpx.stream("POST", server.base_url + "/v1/completions", json=payload, timeout=120,
                      headers={"x-request-id": "leaver-1"}) as response:
        lines = response.iter_lines()
        [next(lines) for _ in range(4)]  # then the client leaves
    server.wait_for_log("generation cancelled by the client")
    cancelled = [e for e in log_lines(server) if "generation cancelled by the client" in e["message"]]
    assert cancelled[-1]["request_id"] == "leaver-1" and cancelled[-1]["logger"] == "inference.scheduler"
    line = access_line(server, "leaver-1")
    assert line["status"] == 200 and line["complete"] is False
    assert line["ttft_seconds"] is not None  # measured when the first text came, not at the end


def test_metrics_parse_and_move_with_requests(server):
    assert httpx.get(server.base_url + "/metrics", timeout=60).status_code == 401  # METRICS_TOKEN is set
    chat = dict(tier="light", endpoint="chat_completions")
    body = {**CHAT, "messages": [{"role": "user", "content": "Metrics please"}]}
    before = scrape(server)
    first = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)
    usage = first.json()["usage"]
    after_miss = scrape(server)
    assert value(after_miss, "llmservice:requests_total", status="200", **chat) == value(before, "llmservice:requests_total", status="200", **chat) + 1
    assert value(after_miss, "llmservice:prompt_tokens_total", tier="light") - value(before, "llmservice:prompt_tokens_total", tier="light") == usage["prompt_tokens"]
    assert value(after_miss, "llmservice:generation_tokens_total", tier="light") - value(before, "llmservice:generation_tokens_total", tier="light") == usage["completion_tokens"]
    for histogram in ("time_to_first_token_seconds", "request_time_per_output_token_seconds", "request_queue_time_seconds"):
        name = f"llmservice:{histogram}_count"
        assert value(after_miss, name, tier="light") == value(before, name, tier="light") + 1, histogram
    assert value(after_miss, "llmservice:e2e_request_latency_seconds_count", **chat) == value(before, "llmservice:e2e_request_latency_seconds_count", **chat) + 1
    assert value(after_miss, "llmservice:response_cache_misses_total", tier="light") == value(before, "llmservice:response_cache_misses_total", tier="light") + 1

    httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)  # a HIT: no model work
    httpx.post(server.base_url + "/v1/chat/completions", json={**body, "model": "nope"}, timeout=120)
    after = scrape(server)
    assert value(after, "llmservice:response_cache_hits_total", tier="light") == value(after_miss, "llmservice:response_cache_hits_total", tier="light") + 1
    assert value(after, "llmservice:generation_tokens_total", tier="light") == value(after_miss, "llmservice:generation_tokens_total", tier="light")
    assert value(after, "llmservice:response_cache_bytes", tier="light") > 0
    errors = ("llmservice:request_errors_total", dict(tier="", endpoint="chat_completions", code="model_not_found"))
    assert value(after, errors[0], **errors[1]) == value(after_miss, errors[0], **errors[1]) + 1
    # Model gauges, read from the manager at scrape time.
    assert value(after, "llmservice:model_loaded", tier="light") == 1 and value(after, "llmservice:models_loaded") >= 1
    assert value(after, "llmservice:model_load_seconds", tier="light") > 0
    assert value(after, "llmservice:num_requests_running", tier="light") == 0
    assert value(after, "llmservice:num_requests_waiting", tier="light") == 0
    assert value(after, "llmservice:draining") == 0


def test_status_shows_the_auto_shutdown_countdown_and_ready_is_200(server):
    assert httpx.get(server.base_url + "/ready", timeout=60).json() == {"status": "ready"}
    out = server.manage("status").stdout
    assert re.search(r"^server: serving, 0 in flight, idle \S+; auto-shutdown in \d+h\d\dm\d\ds$", out, re.M), out
    health = httpx.get(server.base_url + "/health", timeout=60).json()
    assert health["state"] == "serving" and 0 < health["shutdown_in_seconds"] <= 600 * 60


def test_warm_shows_a_spinner_on_a_terminal_and_plain_lines_otherwise(server):
    plain = server.manage("warm", "light").stdout
    assert re.search(r"^\[1/1\] warming light \.\.\. ready, loaded in \d+\.\d\ds \(waited \d+\.\ds\)$", plain, re.M), plain
    assert "\r" not in plain
    tty = run_on_a_terminal([sys.executable, "manage.py", "warm", "light"], env=server.env)
    assert re.search(r"\r\[1/1\] warming light [|/\\-] \d+\.\ds", tty), tty
    assert "ready, loaded in" in tty


def run_on_a_terminal(command: list[str], env: dict) -> str:
    """The command's output as a terminal shows it (stdout is a pseudo-terminal)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the command has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0, output
    return output.decode(errors="replace")


def test_the_access_line_names_the_api_key_and_429s_are_counted_by_code(tmp_path):
    server = LiveServer(tmp_path, env={"LOG_FORMAT": "json", "API_KEYS_REQUIRED": "true"})
    try:
        server.start()
        secret = server.manage("createapikey", "ops-key", "--rpm", "1").stdout.strip()
        headers = {"Authorization": f"Bearer {secret}"}
        with server.client() as client:
            assert client.get("/v1/models", headers={**headers, "x-request-id": "keyed-1"}).status_code == 200
            before = parse(client.get("/metrics").text)
            limited = client.get("/v1/models", headers={**headers, "x-request-id": "keyed-2"})
            after = parse(client.get("/metrics").text)
        assert limited.status_code == 429
        assert access_line(server, "keyed-1")["api_key"] == "ops-key"
        refused = access_line(server, "keyed-2")
        assert (refused["status"], refused["error_code"], refused["api_key"]) == (429, "rate_limit_exceeded", "ops-key")
        code = dict(tier="", endpoint="models", code="rate_limit_exceeded")
        assert value(after, "llmservice:request_errors_total", **code) == value(before, "llmservice:request_errors_total", **code) + 1
        status = dict(tier="", endpoint="models", status="429")
        assert value(after, "llmservice:requests_total", **status) == value(before, "llmservice:requests_total", **status) + 1
    finally:
        server.stop()
