"""Graceful shutdown against a real server (uvicorn, the real SmolLM2): SIGTERM drains, the grace
period stops what is left, auto-shutdown fires only when idle, exits 0, and the cache survives."""

import itertools
import json
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from llmservice.lifecycle import GENERATION_STOPPED, SHUTTING_DOWN
from tests.e2e.live import EOG_BAN
from tests.helpers import wait_until
from tests.server import ROOT, LiveServer

pytestmark = pytest.mark.e2e

EXIT_WAIT = 600  # bounded waits; the assertions are about what happened, not how fast
STREAM_TOKENS = 400  # longer than a 3 s idle timeout: about 5 s on this machine when idle
DRAINED_TOKENS = 100  # long enough to probe the server while it drains the stream


def completion(max_tokens: int, *, stream: bool, prompt: str = "Count: 1, 2, 3,") -> dict:
    """Deterministic (temperature 0), so cacheable under the default policy."""
    return {"model": "light", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "logit_bias": EOG_BAN, "stream": stream}


def read_stream(lines) -> tuple[str, list[dict]]:
    """The text of an SSE completion stream's lines and every event (the last one may be an error)."""
    text, events = [], []
    for line in lines:
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            events.append({"done": True})
            break
        event = json.loads(line[6:])
        events.append(event)
        for choice in event.get("choices") or []:
            text.append(choice.get("text") or "")
    return "".join(text), events


def exit_code(server: LiveServer) -> int:
    return server.process.wait(timeout=EXIT_WAIT)


def test_sigterm_drains_a_stream_refuses_new_work_and_keeps_its_cache_write(tmp_path):
    # A grace period no busy machine exhausts: the stream must end by itself.
    server = LiveServer(tmp_path, env={"SHUTDOWN_GRACE_SECONDS": "600"}).start()
    try:
        with server.client() as client:
            assert client.get("/ready").json() == {"status": "ready"}
            with client.stream("POST", "/v1/completions", json=completion(DRAINED_TOKENS, stream=True)) as stream:
                lines = stream.iter_lines()
                first = next(line for line in lines if line.startswith("data: "))  # generating now
                server.process.send_signal(signal.SIGTERM)
                # Draining: not ready, still alive, new API work refused, the stream goes on.
                not_ready = wait_until(lambda: (r := client.get("/ready")).status_code == 503 and r, "/ready 503")
                assert not_ready.json()["error"]["code"] == "server_shutting_down"
                health = client.get("/health")
                assert health.status_code == 200 and health.json()["state"] == "draining"
                refused = client.post("/v1/completions", json=completion(3, stream=False))
                assert refused.status_code == 503
                assert refused.json()["error"] == {"message": SHUTTING_DOWN, "type": "server_error", "param": None,
                                                   "code": "server_shutting_down"}
                text, events = read_stream(itertools.chain([first], lines))
        assert events[-1] == {"done": True}
        assert events[-2]["choices"][0]["finish_reason"] == "length"
        assert exit_code(server) == -signal.SIGTERM  # uvicorn's exit for a signal, after the drain
        log = server.log()
        assert "Shutting down, received SIGTERM: 1 request(s) in flight" in log
        assert "Unloaded light model" in log and "Stopped, received SIGTERM" in log

        server.start()  # same database: the stream's cache write made it before the exit
        with server.client() as client:
            again = client.post("/v1/completions", json=completion(DRAINED_TOKENS, stream=False))
        assert again.headers["x-cache"] == "HIT"
        assert again.json()["choices"][0]["text"] == text
    finally:
        server.stop()


def test_the_grace_period_stops_running_and_queued_generations_with_an_error(tmp_path):
    server = LiveServer(tmp_path, env={"SHUTDOWN_GRACE_SECONDS": "1", "LIGHT_PARALLEL": "1"}).start()
    queued: dict = {}

    def queued_request():
        with server.client() as c:
            queued["response"] = c.post("/v1/completions", json=completion(5, stream=False, prompt="Hello"))

    try:
        with server.client() as client, client.stream("POST", "/v1/completions", json=completion(1500, stream=True)) as stream:
            lines = stream.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            waiter = threading.Thread(target=queued_request)
            waiter.start()
            wait_until(lambda: "llmservice:num_requests_waiting{tier=\"light\"} 1.0" in client.get("/metrics").text,
                       "a second request queued behind the stream")
            server.process.send_signal(signal.SIGTERM)
            _, events = read_stream(lines)
            waiter.join(EXIT_WAIT)
        assert events[-1] == {"done": True}
        assert events[-2]["error"]["code"] == "server_shutting_down"
        assert events[-2]["error"]["message"] == GENERATION_STOPPED
        stopped = queued["response"]
        assert stopped.status_code == 503 and stopped.json()["error"]["message"] == GENERATION_STOPPED
        assert exit_code(server) == -signal.SIGTERM
        assert "Grace period over (SHUTDOWN_GRACE_SECONDS=1): stopping 2 generation(s)" in server.log()

        server.start()  # a stream cut short by the server is not cached
        with server.client() as client:
            assert client.post("/v1/completions", json=completion(4, stream=False)).headers["x-cache"] == "MISS"
    finally:
        server.stop()


def test_auto_shutdown_fires_when_idle_exits_0_and_the_cache_persists(tmp_path):
    server = LiveServer(tmp_path, env={"AUTO_SHUTDOWN_MINUTES": "0.2"}).start()  # 12 s
    try:
        with server.client() as client:
            answer = client.post("/v1/completions", json=completion(8, stream=False))
            assert answer.headers["x-cache"] == "MISS"
            left = client.get("/health").json()["shutdown_in_seconds"]
            assert 0 < left <= 12
        assert exit_code(server) == 0
        log = server.log()
        assert "Shutting down, auto-shutdown after 0.2 minute(s) without API requests" in log
        assert "Unloaded light model" in log and "Finished server process" in log

        server.env["AUTO_SHUTDOWN_MINUTES"] = "0"
        server.start()
        with server.client() as client:
            again = client.post("/v1/completions", json=completion(8, stream=False))
        assert again.headers["x-cache"] == "HIT"
        assert again.json()["choices"] == answer.json()["choices"]
    finally:
        server.stop()


def test_auto_shutdown_never_fires_during_a_long_stream(tmp_path):
    # Idle timeout 3 s and no grace: were the stream not counted as activity, it would be cut off.
    server = LiveServer(tmp_path, env={"AUTO_SHUTDOWN_MINUTES": "0.05", "SHUTDOWN_GRACE_SECONDS": "0"}).start()
    try:
        with server.client() as client, client.stream("POST", "/v1/completions", json=completion(STREAM_TOKENS, stream=True)) as stream:
            request_id = stream.headers["x-request-id"]
            text, events = read_stream(stream.iter_lines())
        assert events[-1] == {"done": True} and events[-2]["choices"][0]["finish_reason"] == "length"
        assert server.process.poll() is None  # alive when the stream ended ...
        assert exit_code(server) == 0  # ... and gone once idle afterwards
        log = server.log()
        assert log.index(f"[{request_id}]: request_id={request_id}") < log.index("Shutting down, auto-shutdown")
    finally:
        server.stop()


def test_ready_is_503_when_the_database_is_unreachable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    server = LiveServer(tmp_path)
    server.env["DATABASE_URL"] = f"sqlite:///{data / 'db.sqlite3'}"
    server.start()
    try:
        with server.client() as client:
            assert client.get("/ready").status_code == 200
            for path in data.iterdir():
                path.unlink()
            data.rmdir()
            response = client.get("/ready")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "database_unavailable"
    finally:
        server.stop()


def test_restart_on_demand_with_an_inherited_socket(tmp_path):
    """What systemd socket activation does: it holds the listening socket, starts `manage.py serve
    --fd N` on it, and starts it again when a connection arrives after an auto-shutdown."""
    server = LiveServer(tmp_path, env={"AUTO_SHUTDOWN_MINUTES": "0.05"})
    server.manage("migrate", "--noinput")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/models"

    def start():
        with open(server.log_path, "a") as log:
            return subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--fd", str(listener.fileno())],
                cwd=ROOT, env=server.env, pass_fds=(listener.fileno(),), stdout=log, stderr=subprocess.STDOUT,
            )

    processes = [start()]
    try:
        assert httpx.get(url, timeout=EXIT_WAIT).status_code == 200  # waits in the backlog until served
        assert processes[0].wait(timeout=EXIT_WAIT) == 0  # auto-shutdown
        answer: dict = {}
        client = threading.Thread(target=lambda: answer.update(response=httpx.get(url, timeout=EXIT_WAIT)))
        client.start()  # connects to the held socket while no server runs
        processes.append(start())
        client.join(EXIT_WAIT)
        assert answer["response"].status_code == 200
        assert processes[1].wait(timeout=EXIT_WAIT) == 0
        assert server.log().count("Shutting down, auto-shutdown") == 2
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        listener.close()
