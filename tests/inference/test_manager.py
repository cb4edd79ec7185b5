"""The manager's queueing, with the fake backend (tests/fakes.py): no model code runs here."""

import asyncio
import dataclasses
import pytest

from inference.events import Delta, Finished, Started
from inference.params import GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import ContextLengthExceeded, ModelUnavailable
from tests.fakes import FakeBackend
from tests.helpers import async_wait_until


def spec(path="fake.bin", **load):
    return ModelSpec(name="fake", backend="fake", kind="chat", model_path=path, load=load, defaults={})


def request(max_tokens=4, prompt="hello"):
    return GenerationRequest(sampling=resolve_sampling({"max_tokens": max_tokens}, {}), prompt=prompt)


async def run(manager, s, r):
    return [e async for e in manager.generate(s, r)]


async def test_generation_runs_on_the_owner_thread_not_the_event_loop(manager):
    events = await run(manager, spec(), request())
    assert isinstance(events[0], Started)
    assert [e.text for e in events if isinstance(e, Delta)] == ["w0 ", "w1 ", "w2 ", "w3 "]
    assert events[-1] == Finished("length", 1, 4)
    assert FakeBackend.loads == 1
    assert FakeBackend.threads == {"model-fake"}  # the model's owner thread, never the loop's


async def test_concurrent_first_requests_cause_one_load(manager):
    results = await asyncio.gather(*(run(manager, spec("slow"), request()) for _ in range(5)))
    assert FakeBackend.loads == 1
    assert all(r[-1].reason == "length" for r in results)


async def test_requests_are_served_in_arrival_order(manager):
    """The serial engine's promise: one request at a time, so they also finish in arrival order."""
    order = []

    async def one(i):
        async for event in manager.generate(spec("slow"), request(max_tokens=2, prompt=f"p{i}")):
            if isinstance(event, Finished):
                order.append(i)

    tasks = []
    for i in range(4):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.01)  # arrival order 0, 1, 2, 3
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]


async def test_closing_the_stream_cancels_generation_and_the_queue_moves_on(manager):
    stream = manager.generate(spec("slow"), request(max_tokens=1000))
    async for event in stream:
        if isinstance(event, Delta):
            break
    await stream.aclose()
    events = await run(manager, spec("slow"), request(max_tokens=2))
    assert events[-1].reason == "length"
    status = manager.status()["fake"]
    assert status.requests == 2 and status.in_flight == 0
    cancelled = status.recent[0]
    assert cancelled.completion_tokens < 1000


async def test_load_failure_is_503_for_every_waiting_request_and_is_retried(manager):
    results = await asyncio.gather(*(run(manager, spec("missing"), request()) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ModelUnavailable) and r.status == 503 for r in results)
    assert manager.status()["fake"].state == "failed"
    # the next request tries again (the file may have been fixed meanwhile)
    events = await run(manager, spec(), request())
    assert events[-1].reason == "length"


async def test_backend_errors_reach_the_request_as_typed_errors(manager):
    with pytest.raises(ContextLengthExceeded):
        await run(manager, spec(), request(prompt="x " * 100))
    # and the worker keeps serving
    assert (await run(manager, spec(), request()))[-1].reason == "length"


async def test_changed_load_parameters_replace_the_instance(manager):
    await run(manager, spec(n_ctx=64), request())
    await run(manager, spec(n_ctx=128), request())
    await asyncio.to_thread(manager.unload_all, True)
    assert FakeBackend.loads == 2
    assert FakeBackend.closes == 2


async def test_unload_closes_the_model_and_next_request_reloads(manager):
    await run(manager, spec(), request())
    assert manager.unload("fake") is True
    await async_wait_until(lambda: "fake" not in manager.status(), "the unloaded model to close")  # "retiring" till then
    assert FakeBackend.closes == 1
    assert manager.unload("fake") is False
    await run(manager, spec(), request())
    assert FakeBackend.loads == 2


async def test_warm_loads_without_a_request(manager):
    status = await asyncio.to_thread(manager.warm, spec())
    assert status.state == "ready" and status.load_seconds is not None and status.requests == 0


async def test_non_streaming_delivery_holds_text_until_the_end_but_loses_nothing(manager):
    streamed = await run(manager, spec(), request(max_tokens=5))
    held = [e async for e in manager.generate(spec(), request(max_tokens=5), stream=False)]
    assert held == streamed


async def test_events_emitted_faster_than_the_loop_drains_arrive_complete_and_in_order(manager):
    events = await run(manager, spec(), request(max_tokens=300))
    assert [e.text for e in events if isinstance(e, Delta)] == [f"w{i} " for i in range(300)]


async def test_n_choices_come_from_one_request_with_indexed_events_and_one_started(manager):
    r = GenerationRequest(sampling=resolve_sampling({"max_tokens": 2, "seed": 7}, {}), prompt="hello", n=3)
    events = await run(manager, spec(), r)
    assert sum(isinstance(e, Started) for e in events) == 1
    finished = [e for e in events if isinstance(e, Finished)]
    assert sorted(e.index for e in finished) == [0, 1, 2]
    assert {e.index for e in events if isinstance(e, Delta)} == {0, 1, 2}
    assert [r.choice(i).sampling.seed for i in range(3)] == [7, 8, 9]
    assert r.choice(1).n == 1


async def test_unloading_a_tier_that_already_unloaded_itself_when_idle_says_it_was_not_loaded(manager):
    idle = dataclasses.replace(spec(), keep_alive=0.05)
    await run(manager, idle, request())
    await async_wait_until(lambda: "fake" not in manager.status(), "the idle model to unload itself")
    assert FakeBackend.closes == 1
    assert manager.unload("fake") is False
