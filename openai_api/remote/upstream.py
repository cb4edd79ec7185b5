"""Talking to a remote tier's upstream: one aiohttp connection pool per tier, retries before the
first byte, the circuit breaker, and the upstream's errors as ours.

- A 4xx (the client's mistake) passes through with its status and envelope.
- A 5xx or a broken connection is a 502 carrying the upstream's message; a read timeout a 504.
- Connection errors and 5xx are retried (backoff doubling from `retry_backoff`) until the upstream
  answers with a status; once it did, nothing is retried (bytes may have reached the client).
  A read timeout is not retried: the upstream took the work.
- Admission limits apply as to a local tier (`_admitted`): `max_connections` requests run upstream
  at once, and the tier's queue limits (QUEUE_MAX_WAITING, QUEUE_MAX_WAIT_SECONDS) refuse with 429.

The client is aiohttp's, not httpx's. Measured on loopback against one upstream: httpx added
1.2-1.7 ms before the first streamed token over a bare asyncio client, aiohttp 0.3 ms (its HTTP
parser is C); and a relayed 32-token stream cost the front 15 ms of CPU instead of 21 (the
per-chunk reads). Proxy variables (HTTP(S)_PROXY, NO_PROXY) and ~/.netrc are honoured, as httpx's
`trust_env` did, but looked up once per pool (`_environment`): aiohttp's own `trust_env` looks both
up again for every request, in two worker-thread hops before the request is sent.
https://docs.aiohttp.org/en/stable/client_advanced.html  (connectors, timeouts)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
import yarl
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env  # what trust_env uses

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
DRAIN_MAX_BYTES = 64 * 1024  # read after an SSE stream's [DONE] so its connection can be reused
DRAIN_SECONDS = 1.0  # ... for at most this long (an upstream that keeps talking is closed instead)
LINE_MAX_BYTES = 16 * 1024 * 1024  # one SSE line from the upstream; longer: a broken answer (502)
LINE_TOO_LONG = "an event line longer than {limit} bytes"


class UpstreamResponse:
    """An upstream's answer (status 2xx, body not yet read), read whole, as lines or as raw bytes.
    Closed by `upstream_request`: returned to the pool when read to the end, else its connection
    is closed (which is how the upstream hears that the client left)."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response

    async def read(self) -> bytes:
        return await self._response.read()

    async def raw(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive."""
        async for piece in self._response.content.iter_any():
            yield piece

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines (LF or CRLF), each as soon as it is complete."""
        pending = bytearray()
        async for piece in self._response.content.iter_any():
            pending += piece
            if b"\n" not in piece:
                if len(pending) > LINE_MAX_BYTES:
                    raise UpstreamFailed(LINE_TOO_LONG.format(limit=LINE_MAX_BYTES))
                continue
            complete = pending.split(b"\n")
            pending = complete.pop()
            for line in complete:
                yield line.rstrip(b"\r").decode(errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode(errors="replace")

    async def drain(self) -> None:
        """Read what is left of the body (after an SSE stream's [DONE]: the chunked encoding's
        last chunk), so the connection goes back to the pool; a body that goes on is given up."""
        content, left = self._response.content, DRAIN_MAX_BYTES
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while left > 0 and not content.at_eof():
                    piece = await content.readany()
                    if not piece:
                        break
                    left -= len(piece)
        except (TimeoutError, aiohttp.ClientError):
            pass

    def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection is kept for the next request
        else:
            self._response.close()  # the upstream's stream is closed: it stops generating


@dataclass
class Pool:
    """One tier's client, made for one configuration on one event loop."""

    key: str
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    base_url: str
    options: RemoteOptions
    slots: asyncio.Semaphore  # requests running upstream at once: the admission gate's capacity
    via: dict[str, Any]  # session.post's proxy, proxy_auth and auth, from the environment (`_environment`)


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
            _closing.add(loop.create_task(_close_when_idle(pool)))
    options = remote_options(spec)
    headers = {"Content-Type": "application/json"}
    if options.api_key_env:
        headers["Authorization"] = f"Bearer {os.environ.get(options.api_key_env, '')}"
    session = aiohttp.ClientSession(
        headers=headers,
        # A pool slot is never waited for (the admission gate holds max_connections); a read
        # timeout applies to the status line and to every read of the body, as httpx's did.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=options.connect_timeout, sock_read=options.read_timeout),
        connector=aiohttp.TCPConnector(limit=options.max_connections, limit_per_host=0),
    )
    base_url = (options.base_url or "").rstrip("/") + "/"
    via = _environment(base_url, authorized="Authorization" in headers)
    pool = _pools[spec.name] = Pool(spec.load_key, loop, session, base_url, options,
                                    asyncio.Semaphore(options.max_connections), via)
    return pool


def _environment(base_url: str, *, authorized: bool) -> dict[str, Any]:
    """What aiohttp's `trust_env` would find for the upstream, with its own helpers: a proxy from
    HTTP(S)_PROXY unless NO_PROXY exempts the host, and ~/.netrc (or $NETRC) credentials for the
    upstream's host unless the tier sends its own key. Looked up when the pool is made (the
    variables and the file are read once, on the event loop: a small file, once per configuration)."""
    via: dict[str, Any] = {}
    try:
        url = yarl.URL(base_url)
    except ValueError:
        return via  # a bad URL: each request then fails as such (502)
    if not url.host:
        return via
    try:
        via["proxy"], via["proxy_auth"] = get_env_proxy_for_url(url)
    except LookupError:
        pass
    if not authorized:
        try:
            via["auth"] = basicauth_from_netrc(netrc_from_env(), url.host)
        except LookupError:
            pass
    return via


_closing: set[asyncio.Task] = set()  # old pools closing (the loop keeps only weak references)


async def _close_when_idle(pool: Pool) -> None:
    """An edited tier's old pool: closed once the requests still using it have finished (each
    holds one of its slots until its response is closed); no new request reaches it."""
    try:
        for _ in range(pool.options.max_connections):
            await pool.slots.acquire()
    finally:
        await pool.session.close()
        _closing.discard(asyncio.current_task())


async def close_pools() -> None:
    """Close every tier's pool on this loop (at shutdown, after the requests finished)."""
    loop = asyncio.get_running_loop()
    closing = list(_closing)
    for task in closing:
        task.cancel()
    await asyncio.gather(*closing, return_exceptions=True)
    for name, pool in list(_pools.items()):
        if pool.loop is loop:
            del _pools[name]
            await pool.session.close()


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
async def upstream_request(spec: ModelSpec, path: str, payload: dict[str, Any]) -> AsyncIterator[UpstreamResponse]:
    """POST `payload` to the upstream's `path`; the response (status 2xx, body not yet read).
    Leaving the block closes it, which closes the upstream's stream (the client's disconnect
    reaches the upstream this way)."""
    pool = _pool(spec)
    options, tier = pool.options, spec.name
    down = upstream_health.admit(tier, reset_seconds=options.breaker_reset_seconds)
    if down is not None:
        raise UpstreamFailed(UPSTREAM_DOWN.format(tier=tier, reason=down))
    headers = {"X-Request-ID": request_id_var.get()} if request_id_var.get() else None
    async with _admitted(pool, spec):
        upstream_health.started(tier)
        try:
            response = await _send(pool, tier, path, payload, headers)
            try:
                yield response
            except aiohttp.ServerTimeoutError:
                _failed(tier, options, UPSTREAM_TIMEOUT.format(tier=tier, seconds=options.read_timeout), UpstreamTimeout)
            except aiohttp.ClientError as exc:
                _failed(tier, options, UPSTREAM_BROKEN.format(tier=tier, reason=_reason(exc)), UpstreamFailed)
            finally:
                response.close()
        finally:
            upstream_health.finished(tier)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


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


async def _send(pool: Pool, tier: str, path: str, payload: dict, headers: dict | None) -> UpstreamResponse:
    options = pool.options
    url, body = pool.base_url + path, json.dumps(payload).encode()
    for attempt in range(options.retries + 1):
        if attempt:
            await asyncio.sleep(options.retry_backoff * 2 ** (attempt - 1))
        try:
            response = await pool.session.post(url, data=body, headers=headers, **pool.via)
        except aiohttp.SocketTimeoutError:  # connected, then no answer for read_timeout: not retried
            _failed(tier, options, UPSTREAM_TIMEOUT.format(tier=tier, seconds=options.read_timeout), UpstreamTimeout)
        except (aiohttp.ClientError, ValueError) as exc:  # connecting failed, the connection broke, a bad URL
            message = UPSTREAM_FAILED.format(tier=tier, reason=_reason(exc))
            logger.warning("%s (attempt %d of %d)", message, attempt + 1, options.retries + 1)
            continue
        if response.status < 400:
            upstream_health.succeeded(tier)
            return UpstreamResponse(response)
        try:
            text = (await response.read()).decode(errors="replace")
        except aiohttp.ClientError as exc:
            text = _reason(exc)
        finally:
            response.release()
        if response.status < 500:
            upstream_health.succeeded(tier)  # it answered: up, and the mistake is the client's
            raise _rejected(response.status, text)
        message = UPSTREAM_FAILED.format(tier=tier, reason=f"{response.status} {_message(text)[0]}")
        logger.warning("%s (attempt %d of %d)", message, attempt + 1, options.retries + 1)
    _failed(tier, options, message, UpstreamFailed)
    raise AssertionError("unreachable")  # pragma: no cover


async def upstream_json(spec: ModelSpec, path: str, payload: dict[str, Any]) -> dict:
    """A whole JSON answer from the upstream."""
    async with upstream_request(spec, path, payload) as response:
        body = await response.read()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamFailed(UPSTREAM_FAILED.format(tier=spec.name, reason="its answer is not a JSON object"))
    return data


async def sse_events(response: UpstreamResponse) -> AsyncIterator[dict]:
    """The JSON events of an upstream's SSE stream, each as soon as its line arrives; ends at [DONE].
    An in-band error event becomes a 502 carrying its message.

    After [DONE] the rest of the body (the chunked encoding's last chunk) is still read: the pool
    keeps a connection for the next request only once its response was read to the end; without
    this every relayed stream opened a new TCP connection to the upstream before its first token."""
    async for line in response.lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            await response.drain()
            return
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if isinstance(event, dict) and "error" in event and "choices" not in event:
            raise UpstreamFailed(_message(data)[0] or "the upstream sent an error event")
        if isinstance(event, dict):
            yield event
