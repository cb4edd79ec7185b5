"""Two service instances on one PostgreSQL and one Redis (both real servers started by the tests):
the cache, tier edits, single flight and a key's rate limit are shared."""

from __future__ import annotations

import threading
import time

import pytest

from tests.server import LiveServer

WAIT = 120  # bounded waits for a state (never asserted on)


@pytest.fixture(scope="module")
def instances(tmp_path_factory, shared_stores):
    env = {**shared_stores, "TIER_NAMES": "light", "LIGHT_MAX_TOKENS": "5", "CACHE_REQUESTS": "deterministic",
           "API_KEYS_REQUIRED": "true",
           "CACHE_PERSIST_TO_DISK": "false",  # only Redis can share an answer: the front is what is tested
           "TIER_SNAPSHOT_SECONDS": "3600"}  # only the cross-instance invalidation can make B see A's edit
    a = LiveServer(tmp_path_factory.mktemp("instance_a"), env=env)
    b = LiveServer(tmp_path_factory.mktemp("instance_b"), env=env)
    a.manage("migrate", "--noinput")
    a.manage("sync_tiers")
    started = []
    try:
        for server in (a, b):
            started.append(server.start(migrate=False))
        yield a, b
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def key(instances):
    a, _ = instances
    return a.manage("createapikey", "shared", "--tier", "light").stdout.strip()


def chat(server, key, content, **extra):
    with server.client(headers={"Authorization": f"Bearer {key}"}) as http:
        return http.post("/v1/chat/completions",
                         json={"model": "light", "messages": [{"role": "user", "content": content}], **extra})


def wait_until(predicate, what):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw: {what}")


def test_cache_hit_across_instances(instances, key):
    a, b = instances
    first = chat(a, key, "Name a colour.", temperature=0)
    second = chat(b, key, "Name a colour.", temperature=0)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]


def test_tier_edit_applies_on_the_other_instance(instances, key):
    a, b = instances
    before = chat(b, key, "Tell me a story.", temperature=0.9).json()
    assert before["usage"]["completion_tokens"] == 5  # LIGHT_MAX_TOKENS, the tier's soft default
    # The edit the admin makes (Tier.save), on instance A.
    a.manage("shell", "-c", "from registry.models import Tier; t = Tier.objects.get(name='light'); t.max_tokens = 3; t.save()")
    after = chat(b, key, "Tell me a story.", temperature=0.9).json()
    assert after["usage"]["completion_tokens"] == 3


def test_single_flight_across_instances(instances, key):
    """B's identical request waits for A's generation and is answered from it."""
    a, b = instances
    body = dict(temperature=0, max_tokens=150)
    answers = {}

    def ask(name, server):
        answers[name] = chat(server, key, "Describe the sea at night in detail.", **body)

    leader = threading.Thread(target=ask, args=("a", a))
    leader.start()
    wait_until(lambda: a.internal("GET", "/cache/stats")["generating"] == 1 or not leader.is_alive(), "A generating")
    follower = threading.Thread(target=ask, args=("b", b))
    follower.start()
    waited = []
    wait_until(lambda: waited.append(b.internal("GET", "/cache/stats")["waiting"]) or waited[-1] == 1
               or not follower.is_alive(), "B waiting")
    leader.join(WAIT)
    follower.join(WAIT)
    assert 1 in waited  # B waited for A's answer (A was still generating when B asked)
    assert (answers["a"].headers["X-Cache"], answers["b"].headers["X-Cache"]) == ("MISS", "HIT")
    assert answers["b"].json()["choices"][0]["message"] == answers["a"].json()["choices"][0]["message"]


def test_rate_limit_shared(instances):
    a, b = instances
    limited = a.manage("createapikey", "limited", "--tier", "light", "--rpm", "2").stdout.strip()
    statuses = [chat(server, limited, "Hi.", temperature=0.9).status_code for server in (a, b, a, b)]
    assert statuses == [200, 200, 429, 429]
