"""REDIS_URL set, and Redis unreachable: no request hangs or fails with a 500. The response cache's
shared front is a miss (the database's cache still answers), single flight goes on without its
lock, and an API key whose limits cannot be checked gets a 503; once a real redis-server listens
there again, everything works without a restart. Served in-process (Django's async client) on
the fake backend, with a real redis-server for the recovery."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client

from llmservice import redis_clients
from openai_api import ratelimit
from openai_api.ratelimit_redis import UNAVAILABLE
from openai_api.usage import usage_buffer
from registry.client import internal_token
from registry.models import CachedResponse, Tier
from registry.services import api_key_create, cached_response_clear
from registry.signals import CacheClearIncomplete
from tests.server import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}


def forget_clients() -> None:
    """Redis clients, the rate limiter and usage counts are made once per process: made afresh."""
    ratelimit._limiter = None
    redis_clients._async_clients.clear()
    redis_clients._sync_client = None
    usage_buffer.discard()


def use_redis(settings, port: int) -> None:
    """REDIS_URL (cache front, single flight, rate limits) at a loopback port, with short timeouts."""
    url = f"redis://127.0.0.1:{port}/0"
    settings.REDIS_URL = url
    settings.REDIS_TIMEOUT_SECONDS = 0.5
    settings.CACHES = {**settings.CACHES, "responses": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": "llmservice",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    settings.RATE_LIMITER = "openai_api.ratelimit_redis.RedisRateLimiter"
    settings.API_KEYS_REQUIRED = True
    forget_clients()
    Tier.objects.create(name="fake", backend="fake", model_path="fake.bin")


@pytest.fixture
def redis_port(settings):
    """REDIS_URL at a loopback port nothing listens on (yet)."""
    port = free_port()
    use_redis(settings, port)
    yield port
    forget_clients()


@pytest.fixture
def keys(redis_port):
    _, limited = api_key_create(name="limited", requests_per_minute=100)
    _, unlimited = api_key_create(name="unlimited")
    return limited, unlimited


async def chat(secret: str):
    response = await AsyncClient().post("/v1/chat/completions", json.dumps(CHAT), content_type="application/json",
                                        headers={"Authorization": f"Bearer {secret}"})
    return response, json.loads(response.content)


def start_redis(port: int) -> subprocess.Popen:
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ends = time.monotonic() + 10
    while time.monotonic() < ends:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


async def test_a_key_whose_limits_cannot_be_checked_gets_a_503(keys, redis_port):
    limited, _ = keys
    response, body = await chat(limited)
    assert response.status_code == 503
    assert body["error"]["code"] == "rate_limiter_unavailable" and body["error"]["message"] == UNAVAILABLE
    assert str(redis_port) not in response.content.decode()  # no internal address reaches the client


async def test_without_redis_answers_still_come_and_the_database_cache_still_hits(keys):
    _, unlimited = keys
    first, body = await chat(unlimited)
    assert first.status_code == 200 and first["X-Cache"] == "MISS"
    second, again = await chat(unlimited)  # the shared front missed; the database's cache answers
    assert second.status_code == 200 and second["X-Cache"] == "HIT"
    assert again["choices"][0]["message"] == body["choices"][0]["message"]


async def test_redis_coming_back_is_used_without_a_restart(keys, redis_port):
    limited, _ = keys
    assert (await chat(limited))[0].status_code == 503
    process = await sync_to_async(start_redis)(redis_port)
    try:
        response, _ = await chat(limited)
        assert response.status_code == 200
        import redis

        client = redis.Redis(port=redis_port)
        assert client.keys("llmservice:ratelimit:*")  # counted in Redis now
        assert any(k.startswith(b"llmservice:") and b"ratelimit" not in k for k in client.keys("*"))  # the front filled
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def silent_redis(settings, silent_upstream):
    """REDIS_URL at a fake that accepts connections and says nothing (`SilentUpstream`); a key
    without limits."""
    use_redis(settings, silent_upstream.port)
    _, secret = api_key_create(name="unlimited")
    yield secret
    forget_clients()


async def test_a_redis_that_never_answers_costs_its_timeout_not_a_hang(silent_redis):
    """Each command gives up after REDIS_TIMEOUT_SECONDS, and the answer still comes."""
    response, body = await chat(silent_redis)
    assert response.status_code == 200 and body["choices"][0]["message"]["content"]
    for client in (redis_clients.redis_async(), await sync_to_async(redis_clients.redis_sync)()):
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.5


async def test_a_clear_with_redis_down_deletes_the_rows_and_says_the_shared_front_stays(keys, redis_port):
    _, unlimited = keys
    assert (await chat(unlimited))[0].status_code == 200  # one answer in the database's cache
    assert await CachedResponse.objects.acount() == 1
    with pytest.raises(CacheClearIncomplete) as raised:
        await sync_to_async(cached_response_clear)()
    assert raised.value.deleted == 1 and "shared cache front could not be cleared" in str(raised.value)
    assert await CachedResponse.objects.acount() == 0

    await chat(unlimited)  # the server's own clear (manage.py clearcache): a 503 that says so
    response = await AsyncClient().post("/internal/cache/clear", "{}", content_type="application/json",
                                        headers={"Authorization": f"Bearer {internal_token()}"})
    body = json.loads(response.content)
    assert response.status_code == 503 and body["error"]["code"] == "cache_front_not_cleared", body
    assert body["error"]["message"].startswith("Deleted 1 cached responses from the database, but the shared")
    assert str(redis_port) not in response.content.decode()


def test_the_admin_clear_with_redis_down_is_an_error_message_not_a_500(redis_port, admin_user):
    tier = Tier.objects.get(name="fake")
    client = Client()
    client.force_login(admin_user)
    response = client.post("/admin/registry/tier/", {"action": "clear_cache", "_selected_action": [tier.pk]}, follow=True)
    assert response.status_code == 200
    said = [str(m) for m in response.context["messages"]]
    assert any("could not be cleared" in m for m in said), said
