"""Clients of the Redis at REDIS_URL (several instances, issue 16): one sync client per process,
one asyncio client per event loop (an asyncio client is bound to the loop it first ran on)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.conf import settings

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
