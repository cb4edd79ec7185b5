"""The scheduler's loop with a fake engine that serves several requests at once (no model code):
admission in arrival order, a full engine queueing, abort, capacity and the admission gate, retire.

`ParallelFakeEngine` is a fake, named as one; the serial adapter and the forward-pass engine are
tested on the real models (test_serial_engine.py, test_embedding_backends.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from inference.admission import QueueLimits, gate_for, request_deadline
from inference.engines.base import EngineStats
from inference.events import Delta, Failed, Finished, Started
from inference.options import EngineOptions, option, options_load
from inference.params import GenerationRequest, ModelSpec, resolve_sampling
from llmservice.errors import InternalError, InvalidRequest, RateLimited
from tests.helpers import JOIN_TIMEOUT, async_wait_until

REFUSED = "the fake engine refuses this prompt"


class ParallelFakeOptions(EngineOptions):
    slots: int = option(2, ge=1)


class ParallelFakeEngine:
    """A fake engine: up to `slots` jobs at once; each step emits one word per running choice.
    While `hold` is clear, steps make no progress (the scheduler keeps admitting and aborting);
    the prompt "refuse" fails at admission, "explode" makes a step raise (an engine bug)."""

    kinds = frozenset({"chat"})
    options = ParallelFakeOptions
    hold = threading.Event()
    instances: list["ParallelFakeEngine"] = []

    def __init__(self, slots: int):
        self.slots = slots
        self.running: dict = {}  # job -> {choice index: words so far}
        self.refused: list = []
        self.admitted: list[str] = []  # prompts, in admission order
        self.aborted: list[str] = []
        self.most_at_once = 0
        self.closed = False

    @classmethod
    def check(cls, spec):
        return []

    @classmethod
    def load(cls, spec):
        engine = cls(options_load(ParallelFakeOptions, spec).slots)
        cls.instances.append(engine)
        return engine

    def free_slots(self):
        return self.slots - len(self.running)

    def active(self):
        return len(self.running) + len(self.refused)

    def admit(self, job):
        self.admitted.append(job.request.prompt)
        if job.request.prompt == "refuse":
            job.emit(Failed(InvalidRequest(REFUSED, param="prompt")))
            self.refused.append(job)
            return
        job.emit(Started(prompt_tokens=1))
        self.running[job] = {index: 0 for index in range(job.request.n)}
        self.most_at_once = max(self.most_at_once, len(self.running))

    def step(self):
        done, self.refused = self.refused, []
        if not self.hold.is_set():
            time.sleep(0.005)
            return done
        for job, choices in list(self.running.items()):
            if job.request.prompt == "explode":
                raise RuntimeError("the fake engine exploded")
            for index, count in list(choices.items()):
                job.emit(Delta(f"w{count} ", index=index))
                choices[index] = count = count + 1
                if count == job.request.sampling.max_tokens:
                    job.emit(Finished("length", 1, count, index))
                    del choices[index]
            if not choices:
                del self.running[job]
                done.append(job)
        return done

    def abort(self, job):
        for index, count in self.running.pop(job, {}).items():
            job.emit(Finished("cancelled", 1, count, index))
        self.aborted.append(job.request.prompt)

    def stats(self):
        used = sum(sum(choices.values()) + 1 for choices in self.running.values())
        return EngineStats(active=sum(len(c) for c in self.running.values()), slots=self.slots,
                           kv_cells_used=used, kv_cells_total=64 * self.slots)

    def close(self):
        self.closed = True


@pytest.fixture
def parallel(settings, manager):
    settings.INFERENCE_BACKENDS = {**settings.INFERENCE_BACKENDS, "fake_parallel": f"{__name__}.ParallelFakeEngine"}
    ParallelFakeEngine.hold.set()
    ParallelFakeEngine.instances = []
    yield manager
    ParallelFakeEngine.hold.set()


def spec(slots=2, name="par", **limits) -> ModelSpec:
    return ModelSpec(name=name, backend="fake_parallel", kind="chat", model_path="-", load={"slots": slots}, defaults={},
                     limits=QueueLimits(**limits))


def request(prompt: str, max_tokens: int = 3, n: int = 1) -> GenerationRequest:
    return GenerationRequest(sampling=resolve_sampling({"max_tokens": max_tokens}, {}), prompt=prompt, n=n)


async def collect(manager, s, r, deadline=None):
    return [e async for e in manager.generate(s, r, deadline=deadline)]


def words(events, index=0) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta) and e.index == index)


async def queued(manager, name, running, waiting):
    await async_wait_until(
        lambda: (s := manager.status().get(name)) is not None and (s.running, s.queued) == (running, waiting),
        f"{running} running and {waiting} queued",
    )


async def test_a_full_engine_queues_requests_and_admits_them_in_arrival_order(parallel):
    await collect(parallel, spec(), request("warm", 1))
    ParallelFakeEngine.hold.clear()
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(collect(parallel, spec(), request(f"p{i}"))))
        await queued(parallel, "par", min(i + 1, 2), max(0, i - 1))
    status = parallel.status()["par"]
    assert (status.running, status.queued, status.in_flight, status.slots, status.active_sequences) == (2, 3, 5, 2, 2)
    ParallelFakeEngine.hold.set()
    results = await asyncio.gather(*tasks)
    engine = ParallelFakeEngine.instances[-1]
    assert engine.admitted == ["warm", "p0", "p1", "p2", "p3", "p4"]  # first come, first admitted
    assert engine.most_at_once == 2  # never more than its slots
    assert all(words(events) == "w0 w1 w2 " and events[-1] == Finished("length", 1, 3) for events in results)
    status = parallel.status()["par"]
    assert (status.running, status.queued, status.requests) == (0, 0, 6)


async def test_the_admission_gate_learns_the_engines_parallelism(parallel):
    await collect(parallel, spec(slots=3, max_waiting=0), request("warm", 1))
    assert gate_for("par").capacity == 3
    ParallelFakeEngine.hold.clear()
    s = spec(slots=3, max_waiting=0)
    tasks = [asyncio.create_task(collect(parallel, s, request(f"p{i}"))) for i in range(3)]
    await queued(parallel, "par", 3, 0)  # all three run at once: none of them counts as waiting
    with pytest.raises(RateLimited):  # a fourth would wait, and the tier allows no waiting
        await collect(parallel, s, request("p3"))
    ParallelFakeEngine.hold.set()
    await asyncio.gather(*tasks)
    assert gate_for("par").counts() == (0, 0)


async def test_a_client_that_leaves_is_aborted_and_its_slot_goes_to_the_next_request(parallel):
    s = spec()
    await collect(parallel, s, request("warm", 1))
    leaving = parallel.generate(s, request("leaver", max_tokens=10**6))  # still running when the hold starts
    assert isinstance(await anext(leaving), Started)
    assert isinstance(await anext(leaving), Delta)
    ParallelFakeEngine.hold.clear()
    staying = asyncio.create_task(collect(parallel, s, request("stayer", max_tokens=40)))
    await queued(parallel, "par", 2, 0)
    waiting = asyncio.create_task(collect(parallel, s, request("next", max_tokens=2)))
    await queued(parallel, "par", 2, 1)
    await leaving.aclose()
    await queued(parallel, "par", 2, 0)  # it got the freed slot while "stayer" still ran
    ParallelFakeEngine.hold.set()
    assert words(await waiting) == "w0 w1 "
    assert words(await staying) == "".join(f"w{i} " for i in range(40))  # untouched by the others
    engine = ParallelFakeEngine.instances[-1]
    assert engine.aborted == ["leaver"] and engine.admitted == ["warm", "leaver", "stayer", "next"]


async def test_a_request_cancelled_while_queued_is_never_admitted(parallel):
    s = spec(slots=1)
    await collect(parallel, s, request("warm", 1))
    ParallelFakeEngine.hold.clear()
    running = asyncio.create_task(collect(parallel, s, request("running")))
    await queued(parallel, "par", 1, 0)
    gone = asyncio.create_task(collect(parallel, s, request("gone")))
    await queued(parallel, "par", 1, 1)
    gone.cancel()
    await async_wait_until(lambda: parallel.status()["par"].queued == 0, "the cancelled request to leave the queue")
    ParallelFakeEngine.hold.set()
    await running
    engine = ParallelFakeEngine.instances[-1]
    assert engine.admitted == ["warm", "running"] and engine.aborted == []
    assert parallel.status()["par"].requests == 2  # served requests only


async def test_a_deadline_aborts_a_running_request_which_ends_as_timeout(parallel):
    s = spec()
    await collect(parallel, s, request("warm", 1))
    ParallelFakeEngine.hold.clear()
    task = asyncio.create_task(collect(parallel, s, request("slow", max_tokens=5), deadline=request_deadline(0.2)))
    await queued(parallel, "par", 1, 0)
    await asyncio.sleep(0.3)  # past the deadline while the engine is held
    ParallelFakeEngine.hold.set()
    events = await task
    assert events[-1].reason == "timeout"
    assert ParallelFakeEngine.instances[-1].aborted == ["slow"]


async def test_n_choices_are_served_together_with_their_index(parallel):
    events = await collect(parallel, spec(), request("n", max_tokens=2, n=3))
    assert sum(isinstance(e, Started) for e in events) == 1
    assert [words(events, i) for i in range(3)] == ["w0 w1 "] * 3
    assert sorted(e.index for e in events if isinstance(e, Finished)) == [0, 1, 2]


async def test_a_request_the_engine_refuses_fails_alone(parallel):
    s = spec()
    results = await asyncio.gather(
        collect(parallel, s, request("before")), collect(parallel, s, request("refuse")), collect(parallel, s, request("after")),
        return_exceptions=True,
    )
    assert isinstance(results[1], InvalidRequest) and results[1].message == REFUSED
    assert words(results[0]) == words(results[2]) == "w0 w1 w2 "
    assert parallel.status()["par"].running == 0


async def test_an_engine_that_raises_fails_its_requests_and_keeps_serving(parallel):
    s = spec()
    with pytest.raises(InternalError):
        await collect(parallel, s, request("explode"))
    assert words(await collect(parallel, s, request("after"))) == "w0 w1 w2 "
    assert parallel.status()["par"].state == "ready"


async def test_the_engines_stats_reach_the_tier_status(parallel):
    s = spec()
    await collect(parallel, s, request("warm", 1))
    ParallelFakeEngine.hold.clear()
    task = asyncio.create_task(collect(parallel, s, request("one", max_tokens=3, n=2)))
    await async_wait_until(lambda: (parallel.status()["par"].engine or EngineStats(0, 0)).active == 2, "two sequences")
    status = parallel.status()["par"]
    assert status.active_sequences == 2 and status.kv_cache_usage == pytest.approx(1 / 128)
    ParallelFakeEngine.hold.set()
    await task
    status = parallel.status()["par"]
    assert status.active_sequences == 0 and status.kv_cache_usage == 0
    assert status.as_dict()["kv_cells_total"] == 128 and status.as_dict()["slots"] == 2


async def test_a_retired_engine_finishes_its_requests_then_closes_and_the_next_request_loads_anew(parallel):
    old = spec()
    await collect(parallel, old, request("warm", 1))
    scheduler = parallel.scheduler(old)
    ParallelFakeEngine.hold.clear()
    tasks = [asyncio.create_task(collect(parallel, old, request(f"old{i}"))) for i in range(3)]
    await queued(parallel, "par", 2, 1)
    new = dataclasses.replace(old, load={"slots": 4})  # the tier's load options changed
    fresh = asyncio.create_task(collect(parallel, new, request("new")))
    await async_wait_until(lambda: len(ParallelFakeEngine.instances) == 2, "the new engine to load")
    assert scheduler.status().state == "retiring"
    ParallelFakeEngine.hold.set()
    assert all(words(events) == "w0 w1 w2 " for events in await asyncio.gather(*tasks, fresh))
    old_engine, new_engine = ParallelFakeEngine.instances
    assert old_engine.admitted == ["warm", "old0", "old1", "old2"] and new_engine.admitted == ["new"]
    assert await asyncio.to_thread(scheduler.join, JOIN_TIMEOUT), "the retired engine's thread never ended"
    assert old_engine.closed and not new_engine.closed
    assert scheduler.status().state == "unloaded"
    assert parallel.status()["par"].slots == 4
