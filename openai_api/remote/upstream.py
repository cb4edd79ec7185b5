"""Talking to a remote tier's upstream: one httpx connection pool per tier, retries before the
first byte, the circuit breaker, and the upstream's errors as ours.

- A 4xx (the client's mistake) passes through with its status and envelope.
- A 5xx or a broken connection is a 502 carrying the upstream's message; a read timeout a 504.
- Connection errors and 5xx are retried (backoff doubling from `retry_backoff`) until the upstream
  answers with a status; once it did, nothing is retried (bytes may have reached the client).
  A read timeout is not retried: the upstream took the work.
- Admission limits apply as to a local tier (`_admitted`): `max_connections` requests run upstream
  at once, and the tier's queue limits (QUEUE_MAX_WAITING, QUEUE_MAX_WAIT_SECONDS) refuse with 429.
https://www.python-httpx.org/advanced/clients/  (pools), /advanced/timeouts/
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx

from inference.admission import gate_for
from inference.params import ModelSpec
from inference.remote import RemoteOptions, upstream_health
from llmservice.errors import UpstreamFailed, UpstreamRejected, UpstreamTimeout
from llmservice.logs import request_id_var

logger = logging.getLogger(__name__)

UPSTREAM_FAILED = "The upstream of tier '{tier}' failed: {reason}"
UPSTREAM_TIMEOUT = "The upstream of tier '{tier}' sent nothing for {seconds:g} s (option read_timeout)."
UPSTREAM_DOWN = "The upstream of tier '{tier}' is marked down after repeated failures (last: {reason})."
UPSTREAM_BROKEN = "The upstream of tier '{tier}' broke off its answer: {reason}"
MESSAGE_MAX = 1000  # characters of an upstream's error text carried into ours
OPTIONS_KEPT = 256  # validated option sets kept (one per tier configuration seen)
DRAIN_MAX_LINES = 16  # lines read after an SSE stream's [DONE] so its connection can be reused


@dataclass
class Pool:
    """One tier's client, made for one configuration on one event loop."""

    key: str
    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    options: RemoteOptions
    slots: asyncio.Semaphore  # requests running upstream at once: the admission gate's capacity


_pools: dict[str, Pool] = {}


_options: dict[str, RemoteOptions] = {}  # by spec.load_key: validated once per configuration


def remote_options(spec: ModelSpec) -> RemoteOptions:
    """The tier's options (spec.load validated). Kept by `load_key`, which changes with any option,
    so an edit (seen on the next request, on every instance) is validated afresh."""
    options = _options.get(spec.load_key)
    if options is None:
        if len(_options) >= OPTIONS_KEPT:
            _options.clear()
        options = _options[spec.load_key] = RemoteOptions.model_validate(dict(spec.load))
    return options


def upstream_model(spec: ModelSpec, options: RemoteOptions) -> str:
    """The upstream's name for the model: the `model` option, else the tier's model_path."""
    return options.model or spec.model_path


def _pool(spec: ModelSpec) -> Pool:
    """The tier's pool; a new one when the tier's configuration changed (an admin edit, seen on
    the next request since the spec is read per request) or on another event loop."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(spec.name)
    if pool is not None and pool.key == spec.load_key and pool.loop is loop:
        return pool
    if pool is not None:
        if pool.key != spec.load_key:
            upstream_health.forget(spec.name)  # a new upstream: judged afresh
        if pool.loop is loop:
            loop.create_task(pool.client.aclose())  # requests still using it finish first
    options = remote_options(spec)
    headers = {}
    if options.api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(options.api_key_env, '')}"
    client = httpx.AsyncClient(
        base_url=(options.base_url or "").rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(connect=options.connect_timeout, read=options.read_timeout, write=options.read_timeout,
                              pool=options.read_timeout),
        limits=httpx.Limits(max_connections=options.max_connections, max_keepalive_connections=options.max_connections),
    )
    pool = _pools[spec.name] = Pool(spec.load_key, loop, client, options, asyncio.Semaphore(options.max_connections))
    return pool


def _message(response_text: str) -> tuple[str, dict]:
    """The upstream's error message (from its envelope if it sent one) and the envelope's fields."""
    try:
        data = json.loads(response_text)
    except ValueError:
        return response_text.strip()[:MESSAGE_MAX] or "(empty body)", {}
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")[:MESSAGE_MAX], error
    if isinstance(error, str):
        return error[:MESSAGE_MAX], {}
    detail = data.get("detail") if isinstance(data, dict) else None  # FastAPI's 422
    if detail is not None:
        return json.dumps(detail)[:MESSAGE_MAX], {}
    return response_text.strip()[:MESSAGE_MAX], {}


def _rejected(status: int, text: str) -> UpstreamRejected:
    message, fields = _message(text)
    return UpstreamRejected(message, status=status, type=fields.get("type"), param=fields.get("param"),
                            code=fields.get("code"))


@asynccontextmanager
async def upstream_request(spec: ModelSpec, path: str, payload: dict[str, Any]) -> AsyncIterator[httpx.Response]:
    """POST `payload` to the upstream's `path`; the response (status 2xx, body not yet read).
    Leaving the block closes it, which closes the upstream's stream (the client's disconnect
    reaches the upstream this way)."""
    pool = _pool(spec)
    options, tier = pool.options, spec.name
    down = upstream_health.admit(tier, reset_seconds=options.breaker_reset_seconds)
    if down is not None:
        raise UpstreamFailed(UPSTREAM_DOWN.format(tier=tier, reason=down))
    headers = {"X-Request-ID": request_id_var.get()} if request_id_var.get() else {}
    async with _admitted(pool, spec):
        upstream_health.started(tier)
        try:
            response = await _send(pool, tier, path, payload, headers)
            try:
                yield response
            except httpx.ReadTimeout:
                _failed(tier, options, UPSTREAM_TIMEOUT.format(tier=tier, seconds=options.read_timeout), UpstreamTimeout)
            except httpx.TransportError as exc:
                _failed(tier, options, UPSTREAM_BROKEN.format(tier=tier, reason=exc or type(exc).__name__), UpstreamFailed)
            finally:
                await response.aclose()
        finally:
            upstream_health.finished(tier)


@asynccontextmanager
async def _admitted(pool: Pool, spec: ModelSpec) -> AsyncIterator[None]:
    """The tier's admission gate (inference/admission.py), as a local tier's: at most
    `max_connections` requests run upstream at once; a request that would wait behind the tier's
    `max_waiting` others, or waits `max_queue_wait_seconds` without starting, is refused (429)."""
    gate = gate_for(spec.name)
    gate.capacity = pool.options.max_connections
    limits = spec.limits
    admission = gate.admit(limits)  # RateLimited when too many wait
    try:
        wait = limits.max_wait_seconds if limits.max_wait_seconds and limits.max_wait_seconds > 0 else None
        try:
            async with asyncio.timeout(wait):
                await pool.slots.acquire()  # a free slot: returns at once
        except TimeoutError:
            raise admission.timeout_error("queue", limits) from None
        admission.started()
        try:
            yield
        finally:
            pool.slots.release()
            admission.finished()
    finally:
        admission.close()


def _failed(tier: str, options: RemoteOptions, message: str, error: type) -> None:
    upstream_health.failed(tier, message, threshold=options.breaker_failures)
    raise error(message)


async def _send(pool: Pool, tier: str, path: str, payload: dict, headers: dict) -> httpx.Response:
    options = pool.options
    for attempt in range(options.retries + 1):
        if attempt:
            await asyncio.sleep(options.retry_backoff * 2 ** (attempt - 1))
        try:
            request = pool.client.build_request("POST", path, json=payload, headers=headers)
            response = await pool.client.send(request, stream=True)
        except httpx.ReadTimeout:
            _failed(tier, options, UPSTREAM_TIMEOUT.format(tier=tier, seconds=options.read_timeout), UpstreamTimeout)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            message = UPSTREAM_FAILED.format(tier=tier, reason=str(exc) or type(exc).__name__)
            logger.warning("%s (attempt %d of %d)", message, attempt + 1, options.retries + 1)
            continue
        if response.status_code < 400:
            upstream_health.succeeded(tier)
            return response
        try:
            text = (await response.aread()).decode(errors="replace")
        except httpx.HTTPError as exc:
            text = str(exc)
        finally:
            await response.aclose()
        if response.status_code < 500:
            upstream_health.succeeded(tier)  # it answered: up, and the mistake is the client's
            raise _rejected(response.status_code, text)
        message = UPSTREAM_FAILED.format(tier=tier, reason=f"{response.status_code} {_message(text)[0]}")
        logger.warning("%s (attempt %d of %d)", message, attempt + 1, options.retries + 1)
    _failed(tier, options, message, UpstreamFailed)
    raise AssertionError("unreachable")  # pragma: no cover


async def upstream_json(spec: ModelSpec, path: str, payload: dict[str, Any]) -> dict:
    """A whole JSON answer from the upstream."""
    async with upstream_request(spec, path, payload) as response:
        body = await response.aread()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamFailed(UPSTREAM_FAILED.format(tier=spec.name, reason="its answer is not a JSON object"))
    return data


async def sse_events(response: httpx.Response) -> AsyncIterator[dict]:
    """The JSON events of an upstream's SSE stream, each as soon as its line arrives; ends at [DONE].
    An in-band error event becomes a 502 carrying its message.

    After [DONE] the rest of the body (the chunked encoding's last chunk) is still read: httpcore
    keeps a connection for the next request only once its response was read to the end; without
    this every relayed stream opened a new TCP connection to the upstream before its first token."""
    lines = response.aiter_lines()
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            await _drain(lines)
            return
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict) and "error" in event and "choices" not in event:
            raise UpstreamFailed(_message(data)[0] or "the upstream sent an error event")
        if isinstance(event, dict):
            yield event


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows [DONE] to the end of the body, unless the upstream goes on talking
    (then the connection is simply closed, not reused)."""
    for _ in range(DRAIN_MAX_LINES):
        if await anext(lines, None) is None:
            return
