"""Shutdown loses no cache write: a write outlives a cancelled request, and shutdown can wait for it.

The database write is replaced by a fake that blocks until released (named so): what is tested is
the bookkeeping around it (openai_api/cache.py `cache_writes_wait`)."""

import asyncio
import threading

from asgiref.sync import sync_to_async

from openai_api import cache


async def test_a_cancelled_request_does_not_cancel_its_write_and_shutdown_waits_for_it(monkeypatch, settings):
    settings.CACHE_PERSIST_TO_DISK = True
    release, started, written = threading.Event(), threading.Event(), []

    def fake_store(**row):
        started.set()
        release.wait(10)
        written.append(row["key"])

    monkeypatch.setattr(cache.services, "cached_response_store", fake_store)
    request = asyncio.create_task(
        cache.cache_store(key="k1", tier="light", endpoint="chat", config_key="c", request={"model": "light"},
                          response={"choices": []})
    )
    assert await sync_to_async(started.wait, thread_sensitive=False)(10)
    request.cancel()  # e.g. uvicorn cancelling what is left after its shutdown timeout
    await asyncio.gather(request, return_exceptions=True)
    assert cache.cache_writes_wait(0.05) is False  # still writing
    release.set()
    assert await sync_to_async(cache.cache_writes_wait, thread_sensitive=False)(10) is True
    assert written == ["k1"]
    cache.response_cache.clear(keys=["k1"])


async def test_a_write_cancelled_before_it_started_still_happens(monkeypatch, settings):
    settings.CACHE_PERSIST_TO_DISK = True
    busy, written = threading.Event(), []
    monkeypatch.setattr(cache.services, "cached_response_store", lambda **row: written.append(row["key"]))
    # Occupy the database thread, so the write waits in its queue when the request is cancelled.
    blocker = asyncio.create_task(sync_to_async(busy.wait)(10))
    await asyncio.sleep(0.05)
    request = asyncio.create_task(
        cache.cache_store(key="k2", tier="light", endpoint="chat", config_key="c", request={"model": "light"},
                          response={"choices": []})
    )
    await asyncio.sleep(0.05)
    request.cancel()
    await asyncio.gather(request, return_exceptions=True)
    busy.set()
    await blocker
    assert await sync_to_async(cache.cache_writes_wait, thread_sensitive=False)(10) is True
    assert written == ["k2"]
    cache.response_cache.clear(keys=["k2"])
