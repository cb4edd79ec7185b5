"""warm / unload / status / clearcache against a real running server (real SmolLM2)."""

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
    assert status_rows(server)["light"][1:3] == ["llamacpp", "no"]

    warm = server.manage("warm", "light")
    assert "[1/1] warming light ... ready, loaded in" in warm.stdout
    row = status_rows(server)["light"]
    assert row[2] == "yes" and row[4] == "MiB"  # memory: the mapped GGUF, ~98 MB
    assert httpx.get(server.base_url + "/v1/models/light", timeout=120).json()["loaded"] is True

    unload = server.manage("unload", "light")
    assert "light: unloaded" in unload.stdout
    assert status_rows(server)["light"][2] == "no"
    assert "light: was not loaded" in server.manage("unload", "light").stdout


def test_warm_without_names_loads_every_enabled_tier_and_unload_all(server):
    out = server.manage("warm").stdout
    assert "warming light" in out
    assert "light: unloaded" in server.manage("unload", "--all").stdout


def test_status_counts_requests_and_clearcache_empties_the_cache(server):
    body = {"model": "light", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}
    for _ in range(2):
        httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=60).raise_for_status()
    assert status_rows(server)["light"][5] == "1"  # the second answer came from the cache
    assert "cache: 1 hits, 1 misses, hit rate 50%" in server.manage("status").stdout
    assert "Deleted 1 cached responses." in server.manage("clearcache", "--tier", "light").stdout
    stats = httpx.get(server.base_url + "/internal/cache/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120).json()
    assert stats["memory_entries"] == stats["database_entries"] == 0


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
