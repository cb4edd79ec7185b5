"""Request ids, the access log and per-request metrics: an ASGI middleware around every HTTP request.

Every request gets an id: the client's `x-request-id` when it is sane, else a new one. It is sent
back in the `x-request-id` header and stamped on every log line about the request
(llmservice/logs.py). As the last byte of the response goes out (for a stream: when it ends), one
access line is logged and the metrics are updated, once per request.

Code deeper in the request adds what only it knows to its `RequestRecord` (request_record.py).
This middleware must stay outermost, so that guards refusing a request are logged too.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from llmservice.activity import server_activity
from llmservice.errors import ServerShuttingDown
from llmservice.lifecycle import SHUTTING_DOWN, lifecycle
from llmservice.logs import request_id_var

from .errors import error_body
from .metrics import observe_request
from .request_record import RequestRecord, request_record_var

logger = logging.getLogger("llmservice.access")

HEADER = b"x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")
# Paths whose requests are API work: they count as activity and are refused while draining.
API_PREFIXES = ("/v1/", "/rerank")
# Probes and scrapes: logged at DEBUG so they don't drown the log.
QUIET_ENDPOINTS = frozenset({"health", "ready", "metrics"})
ERROR_BODY_LIMIT = 8192  # bytes of an error response read to find its code
CLIENT_CLOSED = 499  # logged (as nginx does) when the client left before any response


def endpoint_of(path: str) -> str:
    """A bounded label for `path` (never the raw path: label values must not grow without limit)."""
    if path.startswith("/v1/"):
        rest = path[4:]
        if rest in ("chat/completions", "completions", "embeddings", "rerank"):
            return rest.replace("/", "_")
        if rest == "responses" or rest.startswith("responses/"):
            return "responses"
        return "models" if rest.startswith("models") else "other"
    if path == "/rerank":
        return "rerank"
    for prefix, name in (("/health", "health"), ("/ready", "ready"), ("/metrics", "metrics"),
                         ("/internal/", "internal"), ("/admin/", "admin"), ("/status/", "status")):
        if path.startswith(prefix):
            return name
    return "other"


def _client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == HEADER:
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None


class AccessMiddleware:
    """ASGI middleware: request id, activity, refusal while draining, access line, metrics."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        client = scope.get("client")
        record = RequestRecord(
            id=_client_request_id(scope["headers"]) or uuid.uuid4().hex,
            method=scope["method"],
            path=path,
            endpoint=endpoint_of(path),
            client=client[0] if client else "",
            started=time.perf_counter(),
        )
        scope = {**scope, "llmservice.request": record}  # for ASGI code inside (API key authentication)
        api = path.startswith(API_PREFIXES)
        id_token, record_token = request_id_var.set(record.id), request_record_var.set(record)
        try:
            if api and not lifecycle.accepting:
                await _refuse(record, send)
                return
            if api:
                server_activity.begin()
            try:
                await self.app(scope, receive, _Sender(record, send))
            except BaseException:
                record.status = record.status or 500  # the server answers 500 for an app that raised
                raise
            finally:
                if api:
                    server_activity.end()
            if not record.status:
                record.status = CLIENT_CLOSED  # the client left before a response was started
        finally:
            if record.finished is None:  # never sent in full: the client left, or the app raised
                _request_finished(record)
            request_id_var.reset(id_token)
            request_record_var.reset(record_token)


class _Sender:
    """The `send` the app sees: adds the id header, notes status, cache outcome and error code,
    and finishes the record with the last body message."""

    __slots__ = ("record", "send")

    def __init__(self, record: RequestRecord, send):
        self.record, self.send = record, send

    async def __call__(self, message) -> None:
        record = self.record
        kind = message["type"]
        if kind == "http.response.start":
            record.status = message["status"]
            headers = list(message.get("headers", ()))
            for name, value in headers:
                if name.lower() == b"x-cache":
                    record.cache = value.decode("latin-1")
            headers.append((HEADER, record.id.encode("ascii")))
            message = {**message, "headers": headers}
            if record.status >= 400:
                record._error_body = bytearray()
        elif kind == "http.response.body":
            if record._error_body is not None and len(record._error_body) < ERROR_BODY_LIMIT:
                record._error_body += message.get("body", b"")[: ERROR_BODY_LIMIT - len(record._error_body)]
            if not message.get("more_body", False):
                # Logged and counted before the last byte leaves, so a client that reads the
                # response and then scrapes /metrics sees this request counted.
                record.finished = time.perf_counter()
                _request_finished(record)
        await self.send(message)


async def _refuse(record: RequestRecord, send) -> None:
    """503 while draining, without touching Django (the error envelope, built as everywhere)."""
    body = json.dumps(error_body(ServerShuttingDown(SHUTTING_DOWN))).encode()
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), (b"retry-after", b"5")]
    sender = _Sender(record, send)
    await sender({"type": "http.response.start", "status": 503, "headers": headers})
    await sender({"type": "http.response.body", "body": body})


def _error_code(record: RequestRecord) -> str | None:
    try:
        return json.loads(bytes(record._error_body or b""))["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _request_finished(record: RequestRecord) -> None:
    if record._error_body is not None:
        record.error_code = _error_code(record) or f"http_{record.status}"
        record._error_body = None
    fields = record.fields()
    level = logging.DEBUG if record.endpoint in QUIET_ENDPOINTS else logging.INFO
    if logger.isEnabledFor(level):
        logger.log(level, _Logfmt(fields), extra={"access": fields})
    observe_request(record)


class _Logfmt:
    """The plain-text access line, `key=value ...`, built only if a plain formatter asks for it."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict):
        self.fields = fields

    def __str__(self) -> str:
        return " ".join(f"{k}={_plain(v)}" for k, v in self.fields.items())


def _plain(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value if value and " " not in value and '"' not in value else json.dumps(value)
    return str(value).lower() if isinstance(value, bool) else str(value)
