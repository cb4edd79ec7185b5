"""A remote tier's client honours the environment as httpx's `trust_env` did: HTTP_PROXY (unless
NO_PROXY exempts the upstream's host) and ~/.netrc credentials (unless the tier sends its own
key). They are looked up once per pool, not per request. The upstream, and the proxy, is
`ScriptedUpstream`, a fake (tests/scaleout/servers.py) that records each request's target."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import pytest

from tests.scaleout.servers import started_front

UNRESOLVABLE = "http://upstream.invalid/v1"  # reachable only through the proxy


@pytest.fixture(scope="module")
def upstream(scripted_upstream):
    return scripted_upstream  # the proxy, too


@pytest.fixture(scope="module")
def front(tmp_path_factory, upstream):
    directory = tmp_path_factory.mktemp("environment-front")
    netrc = directory / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    proxy, exempt = upstream.base_url, "127.0.0.1,localhost"
    env = {
        "TIER_NAMES": "proxied,direct,keyed",
        "CACHE_REQUESTS": "none",
        "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": exempt, "no_proxy": exempt, "NETRC": str(netrc),
        "UPSTREAM_TEST_KEY": "k-123",
        "PROXIED_BACKEND": "remote", "PROXIED_MODEL_PATH": "ok", "PROXIED_BASE_URL": UNRESOLVABLE,
        "PROXIED_RETRIES": "0",
        "DIRECT_BACKEND": "remote", "DIRECT_MODEL_PATH": "ok", "DIRECT_BASE_URL": upstream.base_url,
        "KEYED_BACKEND": "remote", "KEYED_MODEL_PATH": "ok", "KEYED_BASE_URL": upstream.base_url,
        "KEYED_API_KEY_ENV": "UPSTREAM_TEST_KEY",
    }
    server = started_front(directory, env)
    yield server
    server.stop()


def ask(front, upstream, model: str, stream: bool = False) -> tuple[str, str | None]:
    """The answer's text checked, and what the upstream (or the proxy) received: target, Authorization."""
    seen = len(upstream.requests)
    with front.client(timeout=30) as http:
        response = http.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    assert response.status_code == 200, response.text
    if not stream:
        assert response.json()["choices"][0]["message"]["content"] == "Hello scripted world"
    assert len(upstream.requests) == seen + 1
    return upstream.requests[-1]


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_goes_through_the_proxy_the_environment_names(front, upstream, stream):
    target, _ = ask(front, upstream, "proxied", stream)
    assert target == UNRESOLVABLE + "/chat/completions"  # absolute form: sent to the proxy


def test_no_proxy_exempts_the_upstream_and_netrc_supplies_its_credentials(front, upstream):
    for _ in range(2):  # the second request on the same pool: looked up once, still applied
        target, authorization = ask(front, upstream, "direct")
        assert target == urlsplit(upstream.base_url).path + "/chat/completions"  # origin form: straight there
        assert authorization == "Basic " + base64.b64encode(b"alice:s3cret").decode()


def test_a_tier_with_its_own_key_sends_that_key_not_the_netrc_entry(front, upstream):
    _, authorization = ask(front, upstream, "keyed")
    assert authorization == "Bearer k-123"
