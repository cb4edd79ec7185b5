"""The ASGI guards in front of Django (llmservice/guards.py), driven as uvicorn drives the app:
Host on every path (finding 4), body size (3), Content-Type (5); and CORS off by default."""

import asyncio
import json

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


async def call(path, *, method="POST", body=b"", headers=(), chunks=None, host=b"127.0.0.1:8000"):
    """One request through the real ASGI application; (status, headers, body)."""
    from llmservice.asgi import http_application  # imported inside a test: it seeds tiers on import

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": ([(b"host", host)] if host is not None else []) + list(headers),
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }
    pieces = list(chunks) if chunks is not None else [body]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected until the answer is sent


    async def send(message):
        sent.append(message)

    await http_application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), content


JSON = [(b"content-type", b"application/json")]


def envelope(content, code):
    body = json.loads(content)
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == code
    return body["error"]


@pytest.mark.parametrize("path, method", [("/v1/models", "GET"), ("/internal/status", "GET"), ("/health", "GET"),
                                          ("/admin/login/", "GET"), ("/v1/chat/completions", "POST")])
async def test_a_foreign_host_is_refused_on_every_path(path, method, db):
    status, _, content = await call(path, method=method, headers=JSON, host=b"evil.example")
    assert status == 400
    assert "ALLOWED_HOSTS" in envelope(content, "invalid_host")["message"]


async def test_allowed_hosts_pass(db):
    for host in (b"127.0.0.1:8000", b"localhost", b"[::1]:8000"):
        assert (await call("/health", method="GET", host=host))[0] == 200


@pytest.mark.parametrize("content_type", [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", None])
async def test_posts_that_are_not_json_are_415(content_type, db):
    headers = [(b"content-type", content_type)] if content_type else []
    status, _, content = await call("/v1/chat/completions", body=b"{}", headers=headers)
    assert status == 415
    envelope(content, "unsupported_media_type")


async def test_json_with_a_charset_is_json(db):
    status, _, _ = await call("/v1/chat/completions", body=b"{}", headers=[(b"content-type", b"application/json; charset=utf-8")])
    assert status == 400  # past the guard: the body itself is what's wrong


async def test_a_declared_oversized_body_is_413_before_it_is_read(settings, db):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    status, headers, content = await call(
        "/v1/chat/completions", headers=JSON + [(b"content-length", b"300000000")], chunks=[]
    )
    assert status == 413 and headers[b"connection"] == b"close"
    assert "MAX_REQUEST_BODY_BYTES" in envelope(content, "request_too_large")["message"]


async def test_a_chunked_body_is_counted_as_it_arrives(settings, db):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    status, _, content = await call("/v1/chat/completions", headers=JSON, chunks=[b"x" * 600, b"y" * 600, b"z" * 600])
    assert status == 413
    envelope(content, "request_too_large")


async def test_a_body_within_the_limit_reaches_the_api(settings, db):
    settings.MAX_REQUEST_BODY_BYTES = 1000
    status, _, content = await call("/v1/chat/completions", headers=JSON, chunks=[b'{"model": ', b'"nope", "messages": []}'])
    assert status == 400 and json.loads(content)["error"]["param"] == "messages"


async def test_cors_is_off_by_default(db):
    status, headers, _ = await call("/v1/models", method="OPTIONS", headers=[
        (b"origin", b"https://attacker.example"), (b"access-control-request-method", b"POST")])
    assert b"access-control-allow-origin" not in headers
