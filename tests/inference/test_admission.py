"""The admission gate, the deadline and load-failure backoff through the manager, with the fake
backend (tests/fakes.py): queueing and timing logic, no model code."""

import asyncio
import dataclasses
import time

import pytest

from inference.admission import AdmissionGate, QueueLimits, gate_for, request_deadline
from inference.events import Delta, Finished
from inference.gguf import gguf_problem
from inference.load_errors import load_backoff, redact_paths
from inference.params import GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import DeadlineExceeded, ModelUnavailable, RateLimited
from tests.fakes import FakeBackend


def spec(path="slow", name="gated", **limits):
    return ModelSpec(
        name=name, backend="fake", kind="chat", model_path=path, load={}, defaults={}, limits=QueueLimits(**limits)
    )


def request(max_tokens=4):
    return GenerationRequest(sampling=resolve_sampling({"max_tokens": max_tokens}, {}), prompt="hello")


async def collect(manager, s, r, deadline=None):
    return [e async for e in manager.generate(s, r, deadline=deadline)]


async def wait_until(predicate, timeout=30.0):
    """Poll `predicate` on the loop (bounded; asserts on state, not on time)."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition never held"
        await asyncio.sleep(0.01)


# --- the gate alone ----------------------------------------------------------------------------
def test_gate_counts_waiting_and_running_and_refuses_past_max_waiting():
    gate = AdmissionGate("t")
    limits = QueueLimits(max_waiting=2, max_wait_seconds=60)
    a, b, c = gate.admit(limits), gate.admit(limits), gate.admit(limits)  # one of them can start at once
    assert gate.counts() == (3, 0)
    with pytest.raises(RateLimited) as refused:
        gate.admit(limits)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    assert "QUEUE_MAX_WAITING" in refused.value.message
    a.started()  # running requests don't count as waiting
    assert gate.counts() == (2, 1)
    with pytest.raises(RateLimited):
        gate.admit(limits)
    c.close()  # a waiter that gives up frees its slot
    gate.admit(limits).close()
    a.finished()
    a.finished()  # idempotent
    b.close()
    assert gate.counts() == (0, 0)


def test_a_request_that_gave_up_is_not_counted_running_when_the_engine_reaches_it():
    gate = AdmissionGate("t")
    admission = gate.admit(QueueLimits())
    admission.close()
    admission.started()
    admission.finished()
    assert gate.counts() == (0, 0)


def test_zero_waiting_means_only_what_can_run_at_once():
    gate = AdmissionGate("t", capacity=2)
    first, second = gate.admit(QueueLimits(max_waiting=0)), gate.admit(QueueLimits(max_waiting=0))
    with pytest.raises(RateLimited):
        gate.admit(QueueLimits(max_waiting=0))
    first.started()
    second.started()
    with pytest.raises(RateLimited):
        gate.admit(QueueLimits(max_waiting=0))


# --- through the manager -----------------------------------------------------------------------
async def test_queue_full_is_a_429_and_the_queue_drains(manager):
    s = spec(max_waiting=1)
    running = asyncio.create_task(collect(manager, s, request(max_tokens=60)))  # starts at once
    await wait_until(lambda: gate_for("gated").counts() == (0, 1))
    waiting = asyncio.create_task(collect(manager, s, request(max_tokens=1)))
    await wait_until(lambda: gate_for("gated").counts() == (1, 1))
    with pytest.raises(RateLimited) as refused:
        await collect(manager, s, request())
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert (await running)[-1].reason == "length" and (await waiting)[-1].reason == "length"
    assert gate_for("gated").counts() == (0, 0)


async def test_waiting_past_the_queue_wait_limit_is_a_429(manager):
    await collect(manager, spec(), request(max_tokens=1))  # loaded: waiting for a load counts as waiting
    s = spec(max_wait_seconds=0.1)
    running = asyncio.create_task(collect(manager, s, request(max_tokens=100)))
    await wait_until(lambda: gate_for("gated").counts()[1] == 1)
    with pytest.raises(RateLimited, match="without starting"):
        await collect(manager, s, request())
    await running
    assert gate_for("gated").counts() == (0, 0)


async def test_deadline_stops_a_running_generation_through_cancellation(manager):
    events = await collect(manager, spec(), request(max_tokens=10_000), deadline=request_deadline(0.3))
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "timeout"
    assert 0 < finished.completion_tokens < 10_000  # it was generating, and it stopped
    assert sum(isinstance(e, Delta) for e in events) == finished.completion_tokens
    await wait_until(lambda: gate_for("gated").counts() == (0, 0))  # the slot is freed


async def test_deadline_while_waiting_is_a_504(manager):
    s = spec()
    running = asyncio.create_task(collect(manager, s, request(max_tokens=100)))
    await wait_until(lambda: gate_for("gated").counts()[1] == 1)
    with pytest.raises(DeadlineExceeded):
        await collect(manager, s, request(), deadline=request_deadline(0.1))
    await running


async def test_deadline_on_a_batched_request_is_a_504(manager):
    from inference.retrieval import EmbeddingRequest

    s = dataclasses.replace(spec("slow", name="gated-embed"), kind="embedding", backend="fake_batch")  # 0.2 s to load
    with pytest.raises(DeadlineExceeded):  # the deadline passes while it waits for the load
        await manager.run_batched(s, EmbeddingRequest(inputs=("x",)), deadline=request_deadline(0.01))
    assert gate_for("gated-embed").counts()[0] == 0


# --- load failures -----------------------------------------------------------------------------
async def test_a_failed_load_is_not_retried_before_its_backoff(manager, settings, monkeypatch):
    settings.LOAD_RETRY_SECONDS = 3600
    attempts = []
    original = FakeBackend.load.__func__
    monkeypatch.setattr(FakeBackend, "load", classmethod(lambda cls, s: attempts.append(1) or original(cls, s)))
    s = spec("missing", name="broken")
    for _ in range(5):
        with pytest.raises(ModelUnavailable):
            await collect(manager, s, request())
    assert len(attempts) == 1
    status = manager.status()["broken"]
    assert status.state == "failed" and status.failures == 1 and status.retry_at > time.time()
    assert "missing" in status.error


async def test_once_the_backoff_has_passed_the_load_is_retried(manager, settings):
    settings.LOAD_RETRY_SECONDS = 0
    s = spec("missing", name="broken")
    for _ in range(3):
        with pytest.raises(ModelUnavailable):
            await collect(manager, s, request())
    assert manager.status()["broken"].failures >= 3  # consecutive failures carry over to the next attempt


def test_backoff_doubles_up_to_the_cap(settings):
    settings.LOAD_RETRY_SECONDS, settings.LOAD_RETRY_MAX_SECONDS = 5, 30
    assert [load_backoff(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]


def test_public_errors_name_files_not_server_paths():
    text = "Model 'x' cannot be loaded: model file not found: /srv/secret/models/m.gguf (see /usr/lib/py/x.py)"
    assert redact_paths(text, "/srv/secret/models/m.gguf") == "Model 'x' cannot be loaded: model file not found: m.gguf (see x.py)"


# --- GGUF header -------------------------------------------------------------------------------
def test_gguf_header_check(tmp_path, smollm2_path):
    import struct

    assert gguf_problem(smollm2_path) is None
    cases = {
        "text.gguf": b"hello, not a model at all....",
        "short.gguf": b"GGUF",
        "version.gguf": b"GGUF" + struct.pack("<IQQ", 99, 10, 10),
        "counts.gguf": b"GGUF" + struct.pack("<IQQ", 3, 0, 10),
    }
    problems = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        problems[name] = gguf_problem(str(tmp_path / name))
    assert "not a GGUF file" in problems["text.gguf"] and "not a GGUF file" in problems["short.gguf"]
    assert "version 99" in problems["version.gguf"] and "corrupt GGUF header" in problems["counts.gguf"]
    assert all(str(tmp_path) not in p for p in problems.values())
