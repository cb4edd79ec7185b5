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
from tests.fakes import FakeBatchBackend
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
