"""ASGI guards in front of Django: Host, body size and Content-Type, refused before Django runs.

Django's ASGI handler reads the whole body (to disk past 2.5 MB) before any middleware, and the
API paths skip the middleware that validates Host, so these checks live here, at the edge:
- every path: the Host header must match ALLOWED_HOSTS (DNS rebinding), else 400;
- a body over MAX_REQUEST_BODY_BYTES is a 413, refused on its Content-Length or, for a chunked
  body, counted as it arrives (never buffered here);
- POST/PUT/PATCH to the API paths must be `Content-Type: application/json`, else 415: the types
  a web page may post cross-origin without a CORS preflight (text/plain, forms) are refused.
Refusals are OpenAI error envelopes (openai_api/errors.py).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from llmservice.errors import InvalidRequest, PayloadTooLarge, ServiceError, UnsupportedMediaType
from openai_api.errors import BODY_TOO_LARGE, error_body

logger = logging.getLogger(__name__)

BAD_HOST = "Invalid Host header '{host}': this server answers only to the names in ALLOWED_HOSTS."
BAD_CONTENT_LENGTH = "The Content-Length header is not a valid number."
NOT_JSON = "Content-Type must be application/json (got '{content_type}')."
BODY_METHODS = (b"POST", b"PUT", b"PATCH")


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value
    return None


def host_allowed(scope) -> tuple[bool, str]:
    """Django's own rule (HttpRequest.get_host), applied to every path."""
    raw = _header(scope, b"host")
    if raw is None:
        server = scope.get("server") or ("", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    else:
        host = raw.decode("latin-1")
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed), host


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media_type = content_type.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


async def send_error(send, exc: ServiceError) -> None:
    body = json.dumps(error_body(exc)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(exc, PayloadTooLarge):
        headers.append((b"connection", b"close"))  # the rest of the body is never read
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded(app, *, api_path_prefixes: tuple[str, ...]):
    """Wrap an ASGI HTTP application with the guards above."""

    async def guard(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        ok, host = host_allowed(scope)
        if not ok:
            logger.warning("Refused a request for Host %r (not in ALLOWED_HOSTS)", host[:200])
            return await send_error(send, InvalidRequest(BAD_HOST.format(host=host[:200]), code="invalid_host"))
        limit = settings.MAX_REQUEST_BODY_BYTES
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await send_error(send, InvalidRequest(BAD_CONTENT_LENGTH, code="invalid_request"))
            if declared > limit:
                return await send_error(send, PayloadTooLarge(BODY_TOO_LARGE.format(limit=limit)))
        if scope["method"].encode() in BODY_METHODS and scope["path"].startswith(api_path_prefixes):
            content_type = _header(scope, b"content-type")
            if not _is_json(content_type):
                shown = (content_type or b"").decode("latin-1")[:100] or "none"
                return await send_error(send, UnsupportedMediaType(NOT_JSON.format(content_type=shown)))

        received = 0
        over = False

        async def counting_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Django treats a disconnect while reading the body as an aborted request
                    # and returns without answering; the 413 is sent below.
                    over = True
                    return {"type": "http.disconnect"}
            return message

        await app(scope, counting_receive, send)
        if over:
            await send_error(send, PayloadTooLarge(BODY_TOO_LARGE.format(limit=limit)))

    return guard
