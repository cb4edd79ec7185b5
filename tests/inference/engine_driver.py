"""Drive an engine directly on the test's thread: admit while it has room, step, abort (what the
scheduler's loop does), with jobs that record their events."""

from __future__ import annotations

import threading
from typing import Callable

from inference.events import Delta, Failed, Finished, Started
from inference.params import ChatMessage, GenerationRequest, resolve_sampling


class RecordingJob:
    """What the engine contract needs of a job: request, emit(event), cancelled."""

    def __init__(self, request: GenerationRequest):
        self.request = request
        self.events: list = []
        self.cancelled = threading.Event()

    def emit(self, event) -> None:
        self.events.append(event)

    def text(self, index: int = 0) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Delta) and e.index == index)

    def finished(self, index: int = 0) -> Finished:
        found = [e for e in self.events if isinstance(e, Finished) and e.index == index]
        assert len(found) == 1, self.events
        return found[0]

    @property
    def started(self) -> Started:
        found = [e for e in self.events if isinstance(e, Started)]
        assert len(found) == 1, self.events
        return found[0]

    @property
    def failed(self) -> BaseException | None:
        errors = [e.error for e in self.events if isinstance(e, Failed)]
        return errors[0] if errors else None

    def logprobs(self, index: int = 0) -> list:
        return [lp for e in self.events if isinstance(e, Delta) and e.index == index for lp in (e.logprobs or [])]


def chat(text: str, *, n: int = 1, **sampling) -> GenerationRequest:
    values = {"temperature": 0, "max_tokens": 12, **sampling}
    return GenerationRequest(sampling=resolve_sampling(values, {}), messages=(ChatMessage("user", text),), n=n)


def completion(prompt, *, echo: bool = False, n: int = 1, **sampling) -> GenerationRequest:
    values = {"temperature": 0, "max_tokens": 12, **sampling}
    return GenerationRequest(sampling=resolve_sampling(values, {}), prompt=prompt, echo=echo, n=n)


def run(engine, jobs: list[RecordingJob], on_step: Callable[[int], None] | None = None, max_steps: int = 10_000) -> int:
    """Admit `jobs` in order as slots free up, step until all are done; returns the steps taken.
    `on_step(n)` runs before step n (to join or cancel jobs mid-flight)."""
    queue, steps = list(jobs), 0
    while queue or engine.active() or steps == 0:
        while queue and engine.free_slots() > 0:
            engine.admit(queue.pop(0))
        if on_step is not None:
            on_step(steps)
        engine.step()
        steps += 1
        assert steps < max_steps, "the engine never finished"
    return steps


def solo(engine, request: GenerationRequest) -> RecordingJob:
    job = RecordingJob(request)
    run(engine, [job])
    return job
