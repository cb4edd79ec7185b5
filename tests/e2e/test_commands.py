"""warm / unload / status / clearcache against a real running server (real SmolLM2)."""

import re
import subprocess
import sys

import httpx
import pytest

from tests.server import ROOT, LiveServer, free_port

pytestmark = pytest.mark.e2e
TOKEN = "commands-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("commands"))
    server.env["INTERNAL_URL"] = server.base_url
    server.env["INTERNAL_TOKEN"] = TOKEN
    server.start()
    yield server
    server.stop()


def status_rows(server) -> dict[str, list[str]]:
    out = server.manage("status").stdout.splitlines()
    assert out[0].split()[:3] == ["TIER", "BACKEND", "LOADED"]
    return {line.split()[0]: line.split() for line in out[1:] if not line.startswith("cache:")}


def test_warm_status_unload_round_trip(server):
    server.manage("unload", "--all")  # whatever other tests of this module left loaded
    assert status_rows(server)["light"][1:3] == ["llamacpp", "no"]

    warm = server.manage("warm", "light")
    assert "[1/1] warming light ... ready, loaded in" in warm.stdout
    row = status_rows(server)["light"]
    assert row[2] == "yes" and row[4] == "MiB"  # memory: the mapped GGUF, ~98 MB
    assert row[-4:-1] == ["0/4", "0", "0%"]  # running of its slots (the batched engine's parallel 4), queued, KV cache use
    assert re.fullmatch(r"[1-5]m\d\ds", row[-1])  # unloads in: KEEP_ALIVE's default 5m, counting from the load
    assert httpx.get(server.base_url + "/v1/models/light", timeout=120).json()["loaded"] is True

    unload = server.manage("unload", "light")
    assert "light: unloaded" in unload.stdout
    assert status_rows(server)["light"][2] == "no"
    assert "light: was not loaded" in server.manage("unload", "light").stdout


def test_warm_without_names_loads_every_enabled_tier_and_unload_all(server):
    out = server.manage("warm").stdout
    assert "warming light" in out
    assert "light: unloaded" in server.manage("unload", "--all").stdout


def cache_stats(server) -> dict:
    return server.internal("GET", "/cache/stats")


def ask(server, content: str) -> str:
    body = {"model": "light", "messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0}
    response = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)
    response.raise_for_status()
    return response.headers["x-cache"]


def test_status_counts_requests_and_clearcache_empties_the_cache(server):
    served = int(status_rows(server)["light"][5]) if status_rows(server)["light"][2] == "yes" else 0
    before = cache_stats(server)
    assert [ask(server, "Hi"), ask(server, "Hi")] == ["MISS", "HIT"]
    assert int(status_rows(server)["light"][5]) == served + 1  # the second answer came from the cache
    hits, misses = before["hits"] + 1, before["misses"] + 1
    assert f"cache: {hits} hits, {misses} misses, hit rate {round(100 * hits / (hits + misses))}%" in server.manage("status").stdout
    deleted = server.manage("clearcache", "--tier", "light").stdout
    assert re.fullmatch(r"Deleted [1-9]\d* cached responses.\n", deleted)
    stats = cache_stats(server)
    assert stats["memory_entries"] == stats["database_entries"] == 0


def test_clearcache_expired_deletes_only_the_expired_entries(server):
    server.manage("clearcache")
    assert [ask(server, "Keep me."), ask(server, "Expire me.")] == ["MISS", "MISS"]
    code = "from registry.models import CachedResponse as C; C.objects.filter(prompt_text__contains='Expire me').update(expires_at='2000-01-01T00:00:00Z')"
    server.manage("shell", "-c", code)
    assert "Deleted 1 cached responses." in server.manage("clearcache", "--expired").stdout
    assert cache_stats(server)["database_entries"] == 1
    assert ask(server, "Keep me.") == "HIT"


def test_unknown_tier_and_missing_arguments_fail_clearly(server):
    result = server.manage("warm", "nope", check=False)
    assert result.returncode == 1 and "The model 'nope' does not exist" in result.stderr
    result = server.manage("unload", check=False)
    assert result.returncode == 1 and "--all" in result.stderr


def test_no_server_running_says_so_and_exits_non_zero(server):
    for command in ("warm", "unload --all", "status", "clearcache"):
        result = manage(server, *command.split(), INTERNAL_URL=f"http://127.0.0.1:{free_port()}")
        assert result.returncode == 1
        assert "No llmservice server is running at" in result.stderr


def test_internal_endpoints_need_the_token(server):
    response = httpx.get(server.base_url + "/internal/cache/stats", timeout=120)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    result = manage(server, "status", INTERNAL_TOKEN="wrong")
    assert result.returncode == 1 and "refused the command" in result.stderr


def manage(server, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`manage.py` with the server's environment plus `env` (LiveServer.manage takes no extra env)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**server.env, **env}, capture_output=True, text=True
    )


def test_commands_authenticate_with_a_token_derived_from_secret_key(llm_server):
    """The shared server has no INTERNAL_TOKEN: a command with the same SECRET_KEY needs nothing else."""
    assert "INTERNAL_TOKEN" not in llm_server.env
    result = manage(llm_server, "status", INTERNAL_URL=llm_server.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:3] == ["TIER", "BACKEND", "LOADED"]
    result = manage(llm_server, "status", INTERNAL_URL=llm_server.base_url, SECRET_KEY="another-secret-key")
    assert result.returncode == 1 and "refused the command" in result.stderr


class ServeCommand(LiveServer):
    """The server started the way the README says: `python manage.py serve`, HOST and PORT from the environment."""

    def command(self) -> list[str]:
        self.env.update(HOST="127.0.0.1", PORT=str(self.port))
        return [sys.executable, "manage.py", "serve"]


def test_manage_py_serve_serves_the_api_and_stops_cleanly(tmp_path):
    server = ServeCommand(tmp_path).start()
    try:
        assert "Lazy loading enabled for" in server.wait_for_log("Lazy loading enabled")
        body = {"model": "light", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        reply = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] is not None
        assert httpx.get(server.base_url + "/health", timeout=120).json()["loaded"] == ["light"]
    finally:
        code = server.stop()
    # SIGTERM: uvicorn shuts down gracefully, then re-raises the signal for its exit status
    assert code in (0, -15) and "Finished server process" in server.log()
