"""API keys (API_KEYS_REQUIRED=true) through the HTTP layer, fake backend: 401, 403, 429, scope,
usage and last-used, and the services and command behind them."""

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone

from openai_api.access import MISSING_KEY
from openai_api.ratelimit import InProcessRateLimiter
from openai_api.usage import usage_buffer
from registry.models import ApiKey, ApiKeyUsage, Tier
from registry.services import api_key_create, api_key_hash, api_key_revoke
from tests.openai_api.conftest import assert_error

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"
HELLO = {"model": "fake", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 3}


@pytest.fixture
def keys_on(settings, fake_tier, manager):
    settings.API_KEYS_REQUIRED = True
    settings.RATE_LIMITER = "openai_api.ratelimit.InProcessRateLimiter"
    import openai_api.ratelimit as ratelimit

    ratelimit._limiter = None  # a fresh limiter per test
    settings.API_KEY_USAGE_FLUSH_SECONDS = 3600  # only explicit flushes write
    usage_buffer.discard()
    Tier.objects.create(name="other", backend="fake", model_path="other.bin")
    yield fake_tier
    usage_buffer.discard()


def make_key(**kwargs):
    return api_key_create(name=kwargs.pop("name", "tester"), **kwargs)


def bearer(secret):
    return {"headers": {"Authorization": f"Bearer {secret}"}}


async def test_missing_and_wrong_keys_are_401(post, client, keys_on):
    error = assert_error(await post(CHAT, HELLO), 401, code="invalid_api_key")
    assert error["message"] == MISSING_KEY
    error = assert_error(await post(CHAT, HELLO, **bearer("sk-llm-not-a-real-key-at-all")), 401, code="invalid_api_key")
    assert "not-a-real" not in error["message"]  # echoed only in part
    assert_error(await client.get("/v1/models"), 401)


async def test_a_valid_key_works_and_only_its_hash_is_stored(post, keys_on):
    key, secret = await sync_to_async(make_key)()
    assert secret.startswith("sk-llm-") and key.key_hash == api_key_hash(secret=secret) and secret not in key.key_hash
    r = await post(CHAT, HELLO, **bearer(secret))
    assert r.status_code == 200 and json.loads(r.content)["usage"]["total_tokens"] == 5


async def test_revoked_and_expired_keys_are_401(post, keys_on):
    key, secret = await sync_to_async(make_key)()
    await sync_to_async(api_key_revoke)(key=key)
    assert "revoked" in assert_error(await post(CHAT, HELLO, **bearer(secret)), 401)["message"]
    _, old = await sync_to_async(make_key)(expires_at=timezone.now() - timedelta(seconds=1))
    assert "expired" in assert_error(await post(CHAT, HELLO, **bearer(old)), 401)["message"]


async def test_a_tier_outside_the_scope_is_403_and_models_lists_only_the_scope(post, client, keys_on):
    fake = await Tier.objects.aget(name="fake")
    _, secret = await sync_to_async(make_key)(tiers=[fake])
    assert_error(await post(CHAT, {**HELLO, "model": "other"}, **bearer(secret)), 403, code="model_not_allowed", param="model")
    assert (await post(CHAT, {**HELLO, "model": "pretend"}, **bearer(secret))).status_code == 200  # an alias of fake
    listed = json.loads((await client.get("/v1/models", **bearer(secret))).content)
    assert [m["id"] for m in listed["data"]] == ["fake"]
    assert_error(await client.get("/v1/models/other", **bearer(secret)), 403)
    assert_error(await post("/v1/embeddings", {"model": "other", "input": "x"}, **bearer(secret)), 403)


async def test_requests_per_minute_is_a_429_with_retry_after(post, keys_on):
    _, secret = await sync_to_async(make_key)(requests_per_minute=2)
    for _ in range(2):
        assert (await post(CHAT, HELLO, **bearer(secret))).status_code == 200
    r = await post(CHAT, HELLO, **bearer(secret))
    error = assert_error(r, 429, code="rate_limit_exceeded")
    assert "requests per minute" in error["message"] and 1 <= int(r["Retry-After"]) <= 60
    _, other = await sync_to_async(make_key)(name="someone else", requests_per_minute=2)
    assert (await post(CHAT, HELLO, **bearer(other))).status_code == 200  # limits are per key


async def test_tokens_per_minute_is_a_429_once_spent(post, keys_on):
    _, secret = await sync_to_async(make_key)(tokens_per_minute=8)
    assert (await post(CHAT, HELLO, **bearer(secret))).status_code == 200  # 5 tokens
    assert (await post(CHAT, HELLO, **bearer(secret))).status_code == 200  # 10: now over
    r = await post(CHAT, HELLO, **bearer(secret))
    error = assert_error(r, 429, code="rate_limit_exceeded")
    assert error["type"] == "tokens" and int(r["Retry-After"]) >= 1


async def test_usage_per_tier_and_day_and_last_used(post, keys_on, settings):
    key, secret = await sync_to_async(make_key)()
    for model in ("fake", "fake", "other"):
        assert (await post(CHAT, {**HELLO, "model": model}, **bearer(secret))).status_code == 200
    assert await ApiKeyUsage.objects.acount() == 0  # nothing written per request
    await sync_to_async(usage_buffer.flush)()
    rows = {u.tier: u async for u in ApiKeyUsage.objects.filter(key=key)}
    assert (rows["fake"].requests, rows["fake"].prompt_tokens, rows["fake"].completion_tokens) == (2, 4, 6)
    assert rows["other"].requests == 1 and rows["other"].day == timezone.now().date()
    used = (await ApiKey.objects.aget(pk=key.pk)).last_used_at
    assert used is not None
    assert (await post(CHAT, HELLO, **bearer(secret))).status_code == 200
    await sync_to_async(usage_buffer.flush)()
    assert (await ApiKey.objects.aget(pk=key.pk)).last_used_at == used  # at most once a minute


async def test_keys_off_ignores_any_bearer(post, fake_tier, manager, settings):
    settings.API_KEYS_REQUIRED = False
    assert (await post(CHAT, HELLO, **bearer("anything"))).status_code == 200


async def test_an_api_key_does_nothing_on_internal(client, keys_on, settings):
    settings.INTERNAL_TOKEN = "internal-secret"
    _, secret = await sync_to_async(make_key)()
    assert_error(await client.get("/internal/status", **bearer(secret)), 401)


def test_createapikey_prints_the_key_once(keys_on, capsys):
    call_command("createapikey", "ci", "--tier", "fake", "--rpm", "10", "--expires-in-days", "1")
    out = capsys.readouterr()
    secret = out.out.strip()
    key = ApiKey.objects.get(key_hash=api_key_hash(secret=secret))
    assert key.name == "ci" and [t.name for t in key.tiers.all()] == ["fake"] and key.requests_per_minute == 10
    assert key.expires_at > timezone.now() and secret not in out.err
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No such tier: nope"):
        call_command("createapikey", "x", "--tier", "nope")


async def test_in_process_limiter_window():
    limiter = InProcessRateLimiter()
    assert await limiter.acquire("k", limit=2, window=60) == 0.0
    assert await limiter.acquire("k", limit=2, window=60) == 0.0
    wait = await limiter.acquire("k", limit=2, window=60)
    assert 0 < wait <= 60
    assert await limiter.wait_time("t", limit=5, window=60) == 0.0
    await limiter.record("t", amount=7, window=60)
    assert await limiter.wait_time("t", limit=5, window=60) > 0
    assert await limiter.acquire("short", limit=1, window=0.001) == 0.0
