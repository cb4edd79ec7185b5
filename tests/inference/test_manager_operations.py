"""What the manager does for operations, with the fake backend (tests/fakes.py): stopping every
generation at shutdown, per-request stats, and the request id on the owner thread."""

import asyncio
import dataclasses
import logging

import pytest

from inference.events import Delta, Finished, Started
from inference.stats import GenerationStats
from llmservice.errors import ServerShuttingDown
from llmservice.logs import RequestIdFilter, request_id_var
from tests.helpers import async_wait_until
from tests.inference.test_manager import request, spec


async def test_abort_all_ends_running_and_queued_generations_with_the_error(manager):
    running = manager.generate(spec("slow"), request(max_tokens=1000))
    assert isinstance(await anext(running), Started)
    assert isinstance(await anext(running), Delta)
    queued = asyncio.create_task(_drain(manager.generate(spec("slow"), request(max_tokens=3))))
    await asyncio.sleep(0.05)  # the second request is queued behind the first
    assert manager.abort_all(ServerShuttingDown("stopping")) == 2
    with pytest.raises(ServerShuttingDown):
        async for _ in running:
            pass
    with pytest.raises(ServerShuttingDown):
        await queued
    # a request after the abort is served as usual
    events = await _drain(manager.generate(spec("slow"), request(max_tokens=2)))
    assert events[-1] == Finished("length", 1, 2)


async def test_a_client_that_leaves_is_still_a_plain_cancellation(manager):
    await leave_after_the_first_text(manager)
    assert manager.abort_all(ServerShuttingDown("stopping")) == 0  # nothing left to stop


async def test_stats_are_filled_once_per_choice(manager):
    stats = GenerationStats()
    r = dataclasses.replace(request(max_tokens=5), n=2)
    await _drain(manager.generate(spec("slow"), r, stats=stats))
    assert (stats.prompt_tokens, stats.completion_tokens) == (1, 10)
    assert stats.queued_at <= stats.started_at <= stats.first_token_at
    assert stats.decode_intervals == 8 and stats.seconds_per_output_token > 0
    assert stats.queue_seconds >= 0


async def test_the_request_id_reaches_the_owner_threads_log_lines(manager):
    seen = []
    handler = logging.Handler()
    handler.addFilter(RequestIdFilter())
    handler.emit = lambda record: seen.append((record.threadName, record.request_id, record.getMessage()))
    logging.getLogger("inference.scheduler").addHandler(handler)
    token = request_id_var.set("req-owner")
    try:
        await leave_after_the_first_text(manager)
        await async_wait_until(lambda: all(s.in_flight == 0 for s in manager.status().values()), "the model to go idle")
    finally:
        request_id_var.reset(token)
        logging.getLogger("inference.scheduler").removeHandler(handler)
    cancelled = [s for s in seen if "cancelled by the client" in s[2]]
    assert cancelled and cancelled[0][:2] == ("model-fake", "req-owner")


async def leave_after_the_first_text(manager):
    """A client that reads the first text of a long generation, then goes away."""
    stream = manager.generate(spec("slow"), request(max_tokens=1000))
    async for event in stream:
        if isinstance(event, Delta):
            break
    await stream.aclose()


async def _drain(events):
    return [e async for e in events]
