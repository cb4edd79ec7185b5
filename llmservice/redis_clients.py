"""Clients of the Redis at REDIS_URL (several instances, issue 16): one sync client per process,
one asyncio client per event loop (an asyncio client is bound to the loop it first ran on).

Every command waits at most REDIS_TIMEOUT_SECONDS. `tolerated()` is how callers that can do
without Redis (the cache front, single flight, the tier version) survive it being unreachable:
the failure is swallowed and logged, at most once a minute, not once per request."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from django.conf import settings

logger = logging.getLogger(__name__)

UNREACHABLE = "Redis at REDIS_URL is unreachable (%s): %s"
WARN_EVERY_SECONDS = 60.0
_warned_at = [float("-inf")]
_async_clients: dict[Any, Any] = {}
_sync_client: Any = None
_lock = threading.Lock()


def redis_async():
    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(settings.REDIS_URL, **_timeouts())
    return client


def redis_sync():
    import redis

    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(settings.REDIS_URL, **_timeouts())
        return _sync_client


def _timeouts() -> dict[str, float]:
    seconds = settings.REDIS_TIMEOUT_SECONDS
    return {"socket_connect_timeout": seconds, "socket_timeout": seconds}


def redis_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable or failing Redis raises (redis-py's errors, and socket ones)."""
    import redis

    return (redis.RedisError, OSError, asyncio.TimeoutError)


@contextmanager
def tolerated(what: str) -> Iterator[None]:
    """Swallow a Redis failure during `what`, with a warning at most once a minute."""
    try:
        yield
    except redis_errors() as exc:
        now = time.monotonic()
        if now - _warned_at[0] >= WARN_EVERY_SECONDS:
            _warned_at[0] = now
            logger.warning(UNREACHABLE, what, exc)
