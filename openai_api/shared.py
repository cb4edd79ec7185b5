"""What several service instances share through Redis (REDIS_URL set): the response cache's front,
single flight of identical requests, and per-key rate limits (openai_api/ratelimit_redis.py).

Without REDIS_URL nothing here is used: one process keeps its LRU and its in-process single flight.

- The cache front is Django's Redis cache (`caches["responses"]`): an entry stored by one instance
  is a hit on every other. It replaces the process LRU, so a clear (admin, `manage.py clearcache`)
  applies everywhere: clearing bumps a generation number that is part of every key.
- Single flight: the first instance to miss takes a Redis lock on the key (SET NX with a timeout:
  a crashed leader never blocks the key longer than REQUEST_TIMEOUT_SECONDS); the others poll
  the front until the answer is there or the lock is gone.
- Redis unreachable (each command waits at most REDIS_TIMEOUT_SECONDS): the front is a miss and
  stores nothing, an instance leads without a lock, and a warning is logged (at most once a
  minute); answers keep coming from the models and the database's cache. redis-py reconnects by
  itself once Redis is back.
https://docs.djangoproject.com/en/5.2/topics/cache/#redis
https://redis.io/docs/latest/develop/use/patterns/distributed-locks/
"""

from __future__ import annotations

import asyncio
import secrets
import time

from django.conf import settings
from django.core.cache import caches

from llmservice.redis_clients import redis_async, tolerated

SHARED_CACHE = "responses"  # the alias of Django's Redis cache in CACHES
GENERATION_KEY = "llmservice:responses:generation"
LOCK_PREFIX = "llmservice:flight:"
POLL_SECONDS = 0.05  # how often a follower looks for the leader's answer
# Deletes the lock only if this leader still holds it (it may have expired and been retaken).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

NO_LOCK = ""  # the token of an instance that leads without a lock (Redis unreachable)


def shared_enabled() -> bool:
    return bool(settings.REDIS_URL)


def redis_client():
    """An asyncio Redis client for this event loop."""
    return redis_async()


# --- the cache front ---------------------------------------------------------------------------
async def _generation() -> int:
    return int(await caches[SHARED_CACHE].aget(GENERATION_KEY, 0) or 0)


async def shared_get(key: str) -> dict | None:
    """The entry (response, tier, expires, size) stored under `key` by any instance; None when
    there is none, or Redis is unreachable."""
    entry = None
    with tolerated("reading the cache"):
        entry = await caches[SHARED_CACHE].aget(f"{await _generation()}:{key}")
    return entry if isinstance(entry, dict) and entry.get("expires", 0) > time.time() else None


async def shared_put(key: str, entry: dict) -> None:
    timeout = max(1, int(entry["expires"] - time.time()))
    with tolerated("storing in the cache"):
        await caches[SHARED_CACHE].aset(f"{await _generation()}:{key}", entry, timeout=timeout)


def shared_clear() -> None:
    """Drop every entry of the front, on every instance (the database keeps its rows)."""
    cache = caches[SHARED_CACHE]
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # not set yet
        cache.add(GENERATION_KEY, 1, timeout=None)


# --- single flight across instances ------------------------------------------------------------
async def flight_acquire(key: str) -> str | None:
    """This instance leads `key`: a token to release it with (NO_LOCK when Redis is unreachable:
    it leads without one). None: another instance leads."""
    token = secrets.token_hex(8)
    timeout_ms = int(max(settings.REQUEST_TIMEOUT_SECONDS or 0, 1) * 1000)
    with tolerated("taking a single-flight lock"):
        acquired = await redis_client().set(LOCK_PREFIX + key, token, nx=True, px=timeout_ms)
        return token if acquired else None
    return NO_LOCK


async def flight_release(key: str, token: str) -> None:
    if token == NO_LOCK:
        return
    with tolerated("releasing a single-flight lock"):  # else it expires by itself
        await redis_client().eval(_RELEASE, 1, LOCK_PREFIX + key, token)


async def flight_wait(key: str) -> dict | None:
    """Wait for the leading instance's answer: the entry once stored, or None when the leader
    gave up (its lock gone without an answer) or REQUEST_TIMEOUT_SECONDS passed."""
    client = redis_client()
    deadline = time.monotonic() + (settings.REQUEST_TIMEOUT_SECONDS or 300)
    while time.monotonic() < deadline:
        entry = await shared_get(key)
        if entry is not None:
            return entry
        held = 0
        with tolerated("waiting on a single-flight lock"):
            held = await client.exists(LOCK_PREFIX + key)
        if not held:  # the leader is done (or gave up), or Redis is unreachable: look once more
            return await shared_get(key)
        await asyncio.sleep(POLL_SECONDS)
    return None
