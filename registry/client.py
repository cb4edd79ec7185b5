"""How management commands reach the running server: its authenticated /internal/ endpoints.

The token is INTERNAL_TOKEN, or (when unset) derived from SECRET_KEY, so a command run with the
server's settings authenticates with no extra configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings

SERVER_UNREACHABLE = "No llmservice server is running at {url} ({reason}). Start it with `python manage.py serve`, or set INTERNAL_URL."
SERVER_REFUSED = "The server at {url} refused the command: {message}"


class ServerUnreachable(Exception):
    pass


class ServerRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def internal_token() -> str:
    if settings.INTERNAL_TOKEN:
        return settings.INTERNAL_TOKEN
    return hmac.new(settings.SECRET_KEY.encode(), b"llmservice-internal", hashlib.sha256).hexdigest()


def internal_url() -> str:
    if settings.INTERNAL_URL:
        return settings.INTERNAL_URL.rstrip("/")
    host = "127.0.0.1" if settings.HOST in ("0.0.0.0", "::", "") else settings.HOST
    return f"http://{host}:{settings.PORT}"


def server_call(method: str, path: str, payload: dict | None = None, *, timeout: float = 600) -> Any:
    """One JSON call to the running server; ServerUnreachable / ServerRefused on failure."""
    url = internal_url() + path
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {internal_token()}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        raise ServerRefused(exc.code, SERVER_REFUSED.format(url=internal_url(), message=message)) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerUnreachable(SERVER_UNREACHABLE.format(url=internal_url(), reason=reason)) from None


def command_call(method: str, path: str, payload: dict | None = None, *, timeout: float = 600) -> Any:
    """server_call for a management command: failures become a CommandError (exit status 1)."""
    from django.core.management.base import CommandError

    try:
        return server_call(method, path, payload, timeout=timeout)
    except (ServerUnreachable, ServerRefused) as exc:
        raise CommandError(str(exc)) from None
