"""Dynamic batching of embedding/rerank requests, with a fake batch backend under the real
forward-pass engine and scheduler (queueing only).

The real backends are exercised in test_embedding_backends.py and the e2e tests.
"""

from __future__ import annotations

import asyncio

import pytest

from inference.manager import get_manager
from inference.retrieval import EmbeddingRequest
from llmservice.errors import InvalidRequest, ModelUnavailable
from tests.fakes import FakeBatchBackend, FakeBatchEngine
from tests.retrieval_models import retrieval_spec


@pytest.fixture
def fake_batch(manager):
    yield retrieval_spec("fake-embed", "embedding", "fake_batch", "gated")
    FakeBatchBackend.gate.set()


async def _wait_running() -> None:
    """Until the first batch is held at the gate (bounded; the test asserts on batches, not time)."""
    for _ in range(3000):
        if FakeBatchBackend.entered.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the first batch never started")


async def _wait_queued(spec, count: int) -> None:
    """Until `count` requests are in flight (bounded; the test asserts on batches, not on time)."""
    for _ in range(3000):
        status = get_manager().status().get(spec.name)
        if status and status.in_flight >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("requests never queued")


async def test_waiting_requests_share_one_batch(fake_batch):
    manager = get_manager()
    first = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("a",))))
    await _wait_running()
    others = [
        asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("b" * n, "c"))))
        for n in range(1, 6)
    ]
    await _wait_queued(fake_batch, 6)
    FakeBatchBackend.gate.set()
    results = await asyncio.gather(first, *others)
    assert FakeBatchBackend.runs == [1, 10]  # the first alone, then the five waiting ones together
    assert [float(r.embeddings[0].dense[0]) for r in results] == [1, 1, 2, 3, 4, 5]
    assert manager.status()[fake_batch.name].requests == 6


async def test_a_bad_request_fails_alone_and_options_split_batches(fake_batch):
    manager = get_manager()
    first = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("a",))))
    await _wait_running()
    good = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("ok",))))
    bad = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("bad",))))
    sparse = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("s",), return_sparse=True)))
    await _wait_queued(fake_batch, 4)
    FakeBatchBackend.gate.set()
    await first
    assert float((await good).embeddings[0].dense[0]) == 2
    with pytest.raises(InvalidRequest):
        await bad
    await sparse
    assert FakeBatchBackend.runs == [1, 1, 1]  # "ok" and the sparse request ran in separate groups


async def test_a_model_that_cannot_load_answers_503(fake_batch):
    spec = retrieval_spec("broken", "embedding", "fake_batch", "missing")
    with pytest.raises(ModelUnavailable):
        await get_manager().run_batched(spec, EmbeddingRequest(inputs=("a",)))


# --- gathering: a pass waits (bounded) for the requests expected to join it ---------------------
# These tests run the engine on a clock they move themselves: the decisions are checked, not timings.
class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Waiting:
    """A stand-in for a queued job: when it was queued, and where its events go."""

    def __init__(self, clock: _Clock):
        self.request = EmbeddingRequest(inputs=("x",))
        self.queued_at = clock()
        self.events = []

    def emit(self, event):
        self.events.append(event)


def _gathering_engine(window: float) -> FakeBatchEngine:
    FakeBatchBackend.gather_seconds = window
    engine = FakeBatchEngine(FakeBatchBackend(retrieval_spec("fake-embed", "embedding", "fake_batch", "fast")))
    engine.clock = _Clock()
    return engine


def _admit(engine, count: int) -> list[_Waiting]:
    jobs = [_Waiting(engine.clock) for _ in range(count)]
    for job in jobs:
        engine.admit(job)
    return jobs


def test_one_client_at_a_time_never_waits():
    engine = _gathering_engine(5.0)
    for _ in range(3):
        (job,) = _admit(engine, 1)
        assert engine.gather_seconds() == 0
        assert engine.step() == [job]
        assert [type(e).__name__ for e in job.events] == ["Result"]
        engine.clock.now += 1


def test_a_pass_waits_for_the_clients_of_the_last_one_then_runs_when_they_are_back():
    engine = _gathering_engine(5.0)
    _admit(engine, 3)
    engine.step()
    engine.clock.now += 1
    _admit(engine, 1)  # the first of the three clients is back: the whole window is left
    assert engine.gather_seconds() == 5.0
    engine.clock.now += 2
    _admit(engine, 1)
    assert engine.gather_seconds() == 3.0  # the window counts from when the wait began
    _admit(engine, 1)
    assert engine.gather_seconds() == 0
    assert len(engine.step()) == 3


def test_requests_that_arrived_during_a_pass_raise_the_expectation():
    engine = _gathering_engine(5.0)
    _admit(engine, 2)
    late = [_Waiting(engine.clock)]  # queued while the pass below runs
    engine.clock.now += 1
    engine.step()
    engine.clock.now += 1
    for job in late:
        engine.admit(job)
    _admit(engine, 1)  # 2 + 1 late expected: 2 here
    assert engine.gather_seconds() == 5.0
    _admit(engine, 1)
    assert engine.gather_seconds() == 0


def test_the_window_ends_the_wait_and_the_expectation_falls_to_what_came():
    engine = _gathering_engine(0.5)
    _admit(engine, 4)
    engine.step()
    engine.clock.now += 1
    _admit(engine, 1)
    assert engine.gather_seconds() == 0.5
    engine.clock.now += 0.6
    assert engine.gather_seconds() == 0
    assert len(engine.step()) == 1
    engine.clock.now += 1
    _admit(engine, 1)
    assert engine.gather_seconds() == 0  # one came, one is expected


def test_a_window_of_zero_never_waits():
    engine = _gathering_engine(0.0)
    _admit(engine, 4)
    engine.step()
    _admit(engine, 1)
    assert engine.gather_seconds() == 0


async def test_the_scheduler_holds_a_pass_for_a_request_about_to_join(fake_batch):
    """The first pass is held; three requests queue behind it. Once it ends, the next pass waits for
    the first request's client to come back (a fourth request, sent a little later), and takes it too."""
    FakeBatchBackend.gather_seconds = 5.0  # bounded; far longer than the test needs
    manager = get_manager()
    first = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("a",))))
    await _wait_running()
    others = [asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("b",)))) for _ in range(3)]
    await _wait_queued(fake_batch, 4)
    FakeBatchBackend.gate.set()
    await first
    await asyncio.sleep(0.05)
    back = asyncio.ensure_future(manager.run_batched(fake_batch, EmbeddingRequest(inputs=("c",))))
    await asyncio.gather(back, *others)
    assert FakeBatchBackend.runs == [1, 4]  # without gathering: [1, 3, 1]
