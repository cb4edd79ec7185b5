"""Exact-match response cache: an in-memory LRU with a TTL in front of the database.

The key hashes the whole normalized request body (so tools, response_format and every sampling
parameter count) with the tier's `config_key`, which changes whenever the tier's configuration
does. The stored form is the neutral `GenerationResult` (serving/results.py) as JSON, never an
endpoint's bytes: a hit is rendered by the endpoint's own renderer, streamed or not, exactly as a
live answer is. Identical requests arriving together generate once: followers wait for the
leader (single flight).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from llmservice.redis_clients import redis_errors
from registry import selectors, services
from registry.signals import CacheClearIncomplete, cached_responses_cleared

from .access import authorized_tier
from .remote import is_remote, remote_endpoint
from .request_record import note_tier, note_tokens
from .shared import flight_acquire, flight_release, flight_wait, shared_clear, shared_enabled, shared_get, shared_put
from .serving.common import ServedEndpoint, on_response_close
from .serving.results import RESULT_VERSION, GenerationResult

logger = logging.getLogger(__name__)

HIT, MISS = "HIT", "MISS"
# Fields that never change an answer: the stream framing is rebuilt, the others are labels or hints.
UNKEYED_FIELDS = ("stream", "stream_options", "user", "prompt_cache_key", "safety_identifier", "keep_alive")


@dataclass
class Entry:
    response: dict  # GenerationResult.to_json()
    tier: str
    expires: float  # time.time()
    size: int


@dataclass(frozen=True)
class Decision:
    read: bool
    write: bool


class ResponseCache:
    """The process's LRU front: key -> Entry, with hit/miss counters per tier."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()  # admin actions clear it from Django's sync thread
        self.inflight: dict[str, asyncio.Future] = {}  # key -> the leader generating it (single flight)
        self.waiting = 0  # followers waiting for a leader's answer right now
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: {"hits": 0, "misses": 0})

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= time.time():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > max(settings.CACHE_MAX_SIZE, 0):
                self._entries.popitem(last=False)

    def clear(self, *, tier: str | None = None, keys: list[str] | None = None, expired_only: bool = False) -> int:
        now = time.time()
        with self._lock:
            doomed = [
                k
                for k, e in self._entries.items()
                if (tier is None or e.tier == tier)
                and (keys is None or k in keys)
                and (not expired_only or e.expires <= now)
            ]
            for k in doomed:
                del self._entries[k]
        return len(doomed)

    def count(self, tier: str, outcome: str) -> None:
        self.counters[tier]["hits" if outcome == HIT else "misses"] += 1

    def memory_stats(self) -> dict[str, dict[str, int]]:
        stats: dict[str, dict[str, int]] = defaultdict(lambda: {"entries": 0, "bytes": 0})
        with self._lock:
            for entry in self._entries.values():
                stats[entry.tier]["entries"] += 1
                stats[entry.tier]["bytes"] += entry.size
        return dict(stats)


response_cache = ResponseCache()


FRONT_NOT_CLEARED = ("the shared cache front could not be cleared: Redis is unreachable ({error}). Its entries "
                     "are served until they expire (CACHE_TTL_SECONDS); clear again once Redis is back.")


def _on_cleared(sender, tier=None, keys=None, expired_only=False, **kwargs) -> None:
    response_cache.clear(tier=tier, keys=keys, expired_only=expired_only)
    if shared_enabled() and not expired_only:  # several instances: their shared front too (Redis expires the rest)
        try:
            shared_clear()
        except redis_errors() as exc:  # the rows are gone; the caller says what is left
            raise CacheClearIncomplete(FRONT_NOT_CLEARED.format(error=type(exc).__name__)) from exc


cached_responses_cleared.connect(_on_cleared, dispatch_uid="openai_api.cache")


# --- deciding and keying ---------------------------------------------------------------------
def cache_decision(*, body: Any, tier: Any, defaults: dict, cache_control: str) -> Decision:
    """Whether this request may be read from and written to the cache.

    Policy CACHE_REQUESTS: "deterministic" (default) caches only requests whose effective
    temperature is 0 or that carry a seed; "all"; "none". `Cache-Control: no-cache` skips the
    read, `no-store` skips both.
    """
    policy = settings.CACHE_REQUESTS
    if not settings.ENABLE_CACHE or not tier.cache_enabled or policy == "none":
        return Decision(False, False)
    if policy == "deterministic":
        temperature = body.temperature if body.temperature is not None else defaults.get("temperature", 1.0)
        if temperature != 0 and getattr(body, "seed", None) is None:
            return Decision(False, False)
    directives = {d.strip().lower() for d in cache_control.split(",")}
    if "no-store" in directives:
        return Decision(False, False)
    return Decision(read="no-cache" not in directives, write=True)


def normalized_request(body: Any, tier_name: str) -> dict:
    """The body as the key sees it: explicit nulls dropped, the tier's canonical name."""
    data = body.model_dump(mode="json", exclude_none=True)
    for name in UNKEYED_FIELDS:
        data.pop(name, None)
    data["model"] = tier_name
    return data


def request_key(*, endpoint: str, config_key: str, request: dict) -> str:
    """The stored form's version is part of the key: entries of an older form are never read."""
    payload = json.dumps([endpoint, config_key, RESULT_VERSION, request], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def prompt_text(request: dict) -> str:
    """Messages or prompt as plain text, for the admin's search."""
    if "messages" in request:
        lines = []
        for m in request["messages"]:
            content = m.get("content")
            lines.append(f"{m.get('role')}: {content if isinstance(content, str) else json.dumps(content)}")
        return "\n".join(lines)
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


# --- reading and writing ---------------------------------------------------------------------
async def cache_lookup(key: str) -> Entry | None:
    entry = await _front_get(key)
    if entry is not None:
        if settings.CACHE_PERSIST_TO_DISK:
            await sync_to_async(services.cached_response_hit)(key=key)
        return entry
    if not settings.CACHE_PERSIST_TO_DISK:
        return None
    row = await sync_to_async(selectors.cached_response_get)(key=key)
    if row is None:
        return None
    await sync_to_async(services.cached_response_hit)(key=key)
    entry = Entry(row.response, row.tier.name, row.expires_at.timestamp(), row.size_bytes)
    await _front_put(key, entry)
    return entry


# --- the front: this process's LRU, or with REDIS_URL the instances' shared one (openai_api/shared.py)
async def _front_get(key: str) -> Entry | None:
    if not shared_enabled():
        return response_cache.get(key)
    data = await shared_get(key)
    return Entry(**data) if data is not None else None


async def _front_put(key: str, entry: Entry) -> None:
    if shared_enabled():
        await shared_put(key, dataclasses.asdict(entry))
    else:
        response_cache.put(key, entry)


class _PendingWrites:
    """Database writes under way. Shutdown waits for these rows, not for the requests: a request
    cancelled mid-write (a shutdown past its grace period) does not cancel its write (shielded)."""

    def __init__(self) -> None:
        self._count = 0
        self._done = threading.Condition()

    async def write(self, write: Callable[..., Any], **kwargs: Any) -> Any:
        with self._done:
            self._count += 1
        return await asyncio.shield(sync_to_async(self._run)(write, kwargs))

    def _run(self, write: Callable[..., Any], kwargs: dict) -> Any:
        try:
            return write(**kwargs)
        finally:
            with self._done:
                self._count -= 1
                self._done.notify_all()

    def wait(self, timeout: float) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._count == 0, timeout)


_pending_writes = _PendingWrites()


def cache_writes_wait(timeout: float) -> bool:
    """Block until no cache write is in progress (at most `timeout` s); whether none is left."""
    return _pending_writes.wait(timeout)


async def cache_store(*, key: str, tier: str, endpoint: str, config_key: str, request: dict, response: dict) -> None:
    size = len(json.dumps(response))
    await _front_put(key, Entry(response, tier, time.time() + settings.CACHE_TTL_SECONDS, size))
    if settings.CACHE_PERSIST_TO_DISK:
        await _pending_writes.write(
            services.cached_response_store,
            key=key,
            tier_name=tier,
            endpoint=endpoint,
            config_key=config_key,
            request=request,
            response=response,
            prompt_text=prompt_text(request),
            size_bytes=size,
            ttl_seconds=settings.CACHE_TTL_SECONDS,
        )


def cache_stats() -> dict:
    """What GET /internal/cache/stats returns (the database part is read by the caller)."""
    memory = response_cache.memory_stats()
    tiers = set(memory) | set(response_cache.counters)
    hits = sum(c["hits"] for c in response_cache.counters.values())
    misses = sum(c["misses"] for c in response_cache.counters.values())
    return {
        "enabled": settings.ENABLE_CACHE,
        "policy": settings.CACHE_REQUESTS,
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        "generating": len(response_cache.inflight),  # cacheable answers being generated now
        "waiting": response_cache.waiting,  # identical requests waiting for one of them
        "memory_entries": sum(m["entries"] for m in memory.values()),
        "memory_bytes": sum(m["bytes"] for m in memory.values()),
        "tiers": {
            name: {**response_cache.counters.get(name, {"hits": 0, "misses": 0}), **memory.get(name, {"entries": 0, "bytes": 0})}
            for name in sorted(tiers)
        },
    }


# --- the wrapper the routers call -------------------------------------------------------------
def _mark(response: HttpResponse, outcome: str) -> HttpResponse:
    response["X-Cache"] = outcome
    return response


async def cached_call(request: HttpRequest, body: Any, *, endpoint: ServedEndpoint) -> HttpResponse:
    """Answer `body` from the cache when allowed, else run the endpoint live (storing its result).

    The tier is resolved once here (registry/tier_snapshot.py: no query) and handed on."""
    tier, spec = await authorized_tier(request, model=body.model)
    note_tier(tier.name)
    if is_remote(spec):  # issue 16: a remote tier's live run is relayed upstream
        endpoint = remote_endpoint(endpoint)
    return await cached_run(request, body, tier=tier, spec=spec, endpoint=endpoint)


async def cached_run(request: HttpRequest, body: Any, *, tier: Any, spec: Any, endpoint: ServedEndpoint,
                     keyed: dict | None = None) -> HttpResponse:
    """`cached_call` once the tier is known. `keyed`: the request as the key sees it, when the body
    alone does not say (the Responses API keys the resolved conversation); else the normalized body."""
    decision = cache_decision(
        body=body, tier=tier, defaults=dict(spec.defaults), cache_control=request.headers.get("Cache-Control", "")
    )
    if not decision.read and not decision.write:
        return _mark(await endpoint.run(body, spec=spec), MISS)
    normalized = keyed if keyed is not None else normalized_request(body, tier.name)
    key = request_key(endpoint=endpoint.name, config_key=spec.config_key, request=normalized)

    leader: asyncio.Future | None = None
    flight: str | None = None  # with REDIS_URL: this instance's lock on the key (single flight across instances)
    if decision.read:
        entry = await cache_lookup(key)
        if entry is None and key not in response_cache.inflight and shared_enabled():
            flight = await flight_acquire(key)
            if flight is None:  # another instance is generating it: wait for its answer
                response_cache.waiting += 1
                try:
                    data = await flight_wait(key)
                finally:
                    response_cache.waiting -= 1
                entry = Entry(**data) if data is not None else None
        elif entry is None and key in response_cache.inflight:
            response_cache.waiting += 1
            try:  # single flight: an identical request is generating; wait for its answer
                # never longer than the leader's own deadline (REQUEST_TIMEOUT_SECONDS)
                await asyncio.wait_for(asyncio.shield(response_cache.inflight[key]), settings.REQUEST_TIMEOUT_SECONDS or None)
            except asyncio.TimeoutError:
                pass
            finally:
                response_cache.waiting -= 1
            entry = await cache_lookup(key)
        result = _stored_result(entry)
        if result is not None:
            response_cache.count(tier.name, HIT)
            note_tokens(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
            return _mark(await endpoint.replay(body, spec=spec, result=result), HIT)
        response_cache.count(tier.name, MISS)
        if key not in response_cache.inflight:
            leader = asyncio.get_running_loop().create_future()
            response_cache.inflight[key] = leader

    def release() -> None:
        if flight is not None:
            asyncio.get_running_loop().create_task(flight_release(key, flight))
        if leader is not None:
            if response_cache.inflight.get(key) is leader:
                del response_cache.inflight[key]
            if not leader.done():
                leader.set_result(None)

    async def keep(result: GenerationResult) -> None:
        try:
            await cache_store(key=key, tier=tier.name, endpoint=endpoint.name, config_key=spec.config_key,
                              request=normalized, response=result.to_json())
        finally:
            release()

    try:
        response = await endpoint.run(body, spec=spec, keep=keep if decision.write else None)
    except BaseException:
        release()
        raise
    if response.streaming:
        on_response_close(response, release)  # a stream that ends early never calls keep
    else:
        release()
    return _mark(response, MISS)


def _stored_result(entry: Entry | None) -> GenerationResult | None:
    if entry is None:
        return None
    try:
        return GenerationResult.from_json(entry.response)
    except (ValueError, KeyError, TypeError):
        logger.warning("cache entry of another form ignored")
        return None
