"""The access middleware around a fake ASGI app (named so): ids, status, error codes, drain, activity.

The real composition (uvicorn, Django, a model) is tested end to end in tests/e2e/test_observability.py.
"""

import json
import logging

import pytest

from llmservice.activity import server_activity
from llmservice.lifecycle import lifecycle
from llmservice.logs import request_id_var
from openai_api.access_log import AccessMiddleware, endpoint_of
from openai_api.request_record import current_request, note_tier


def scope(path="/v1/chat/completions", headers=()):
    return {"type": "http", "method": "POST", "path": path, "headers": list(headers), "client": ("10.0.0.7", 5000)}


def fake_app(status=200, body=b"{}", headers=(), *, raise_exc=None, respond=True, seen=None):
    async def app(scope, receive, send):
        if seen is not None:
            seen.update(request_id=request_id_var.get(), record=current_request(), in_flight=server_activity.in_flight)
        note_tier("light")
        if raise_exc:
            raise raise_exc
        if respond:
            await send({"type": "http.response.start", "status": status, "headers": list(headers)})
            await send({"type": "http.response.body", "body": body})

    return app


async def call(app, s):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await AccessMiddleware(app)(s, receive, send)
    return sent


def header(message, name):
    return dict(message["headers"]).get(name)


@pytest.fixture
def access_lines(caplog):
    caplog.set_level(logging.DEBUG, logger="llmservice.access")
    return lambda: [r.access for r in caplog.records if hasattr(r, "access")]


async def test_a_sane_client_id_is_echoed_and_reaches_the_app(access_lines):
    seen = {}
    sent = await call(fake_app(seen=seen), scope(headers=[(b"x-request-id", b"client-42")]))
    assert header(sent[0], b"x-request-id") == b"client-42"
    assert seen["request_id"] == "client-42" and seen["record"].id == "client-42"
    line = access_lines()[-1]
    assert (line["request_id"], line["tier"], line["status"], line["endpoint"]) == ("client-42", "light", 200, "chat_completions")
    assert line["complete"] is True and line["client"] == "10.0.0.7"


@pytest.mark.parametrize("bad", [b"", b"has space", b"x" * 200, b"quote\"d", b"-leading-dash"])
async def test_an_insane_or_missing_id_is_replaced_by_a_new_one(bad):
    sent = await call(fake_app(), scope(headers=[(b"x-request-id", bad)]))
    new = header(sent[0], b"x-request-id")
    assert new != bad and len(new) == 32 and int(new, 16) >= 0
    assert header((await call(fake_app(), scope()))[0], b"x-request-id") != new  # one per request


async def test_the_error_code_is_read_from_the_envelope(access_lines):
    body = json.dumps({"error": {"message": "m", "type": "t", "param": None, "code": "rate_limit_exceeded"}}).encode()
    await call(fake_app(status=429, body=body), scope())
    assert access_lines()[-1]["error_code"] == "rate_limit_exceeded"
    await call(fake_app(status=502, body=b"<html>bad gateway</html>"), scope())
    assert access_lines()[-1]["error_code"] == "http_502"


async def test_a_client_gone_before_any_response_is_499_and_an_app_crash_is_500(access_lines):
    await call(fake_app(respond=False), scope())
    assert access_lines()[-1]["status"] == 499 and access_lines()[-1]["complete"] is False
    with pytest.raises(RuntimeError):
        await call(fake_app(raise_exc=RuntimeError("bug")), scope())
    assert access_lines()[-1]["status"] == 500


async def test_api_requests_count_as_activity_and_probes_do_not():
    seen = {}
    before = server_activity.total
    await call(fake_app(seen=seen), scope("/v1/completions"))
    assert seen["in_flight"] == 1 and server_activity.in_flight == 0
    await call(fake_app(seen=seen), scope("/health"))
    assert seen["in_flight"] == 0
    assert server_activity.total == before + 1


async def test_while_draining_api_requests_get_503_and_probes_still_pass(monkeypatch, access_lines):
    monkeypatch.setattr(lifecycle, "state", "draining")
    seen = {}
    sent = await call(fake_app(seen=seen), scope("/v1/chat/completions"))
    assert sent[0]["status"] == 503 and not seen  # the app never ran
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "server_shutting_down" and set(error) == {"message", "type", "param", "code"}
    assert access_lines()[-1]["error_code"] == "server_shutting_down"
    assert (await call(fake_app(), scope("/health")))[0]["status"] == 200


@pytest.mark.parametrize(
    "path, endpoint",
    [("/v1/chat/completions", "chat_completions"), ("/v1/models/light", "models"), ("/rerank", "rerank"),
     ("/v1/nope", "other"), ("/internal/status", "internal"), ("/metrics", "metrics"), ("/x/y", "other")],
)
def test_endpoint_labels_are_bounded(path, endpoint):
    assert endpoint_of(path) == endpoint
