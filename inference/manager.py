"""Lazily loaded models: one scheduler (owner thread and queue) per loaded model, by tier name.

The event loop never runs model code. A request passes its tier's admission gate, puts a job on
its model's queue and waits on the job's own asyncio queue; the owner thread feeds it events
(inference/jobs.py, inference/scheduler.py). A new request never interrupts a running one.

With MAX_LOADED_MODELS set, a model about to load first makes room: it unloads the least recently
used idle model; while every loaded model is busy it waits (its requests wait in their queue,
bounded by the tier's queue-wait limit, a 429 past it). A busy model is never evicted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import Any, AsyncIterator

from django.conf import settings

from llmservice.errors import InternalError, ModelUnavailable, ServiceError

from .admission import gate_for
from .backends import engine_class
from .constraints import constraint_prepare
from .events import Event, Failed, Finished, Result
from .jobs import DONE, TIMED_OUT, Job
from .load_errors import retry_message
from .params import GenerationRequest, ModelSpec
from .scheduler import Scheduler
from .stats import GenerationStats
from .remote import upstream_health
from .status import TierStatus

logger = logging.getLogger(__name__)

NO_ANSWER = "The model ended a request without an answer; see the server log."
PREPARE_POLL_SECONDS = 0.02  # how often a constrained request checks on a model still loading
ROOM_POLL_SECONDS = 0.05  # how often a model waiting for room under MAX_LOADED_MODELS looks again


class ModelManager:
    """The process's loaded models, by tier name. Loading happens on first use.

    A retired scheduler (unloaded, or replaced after its tier's load options changed) stays
    visible as "retiring" while it finishes its queued requests, unless a new one serves its tier.
    """

    def __init__(self) -> None:
        self._schedulers: dict[str, Scheduler] = {}
        self._retired: list[Scheduler] = []
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()  # generations in progress; touched on the event loop only

    def scheduler(self, spec: ModelSpec) -> Scheduler:
        """The scheduler serving `spec`, starting a load if there is none (or a stale one).

        A configuration that failed to load is not retried before its `retry_at` (the wait
        doubles with each failure): until then this raises ModelUnavailable (503), as does a
        tier whose backend has no engine for its kind."""
        with self._lock:
            current = self._schedulers.get(spec.name)
            failures = 0
            if current is not None and current.spec.load_key == spec.load_key:
                if current.state == "failed":
                    if current.retry_at is not None and time.time() < current.retry_at:
                        raise ModelUnavailable(retry_message(current.error, current.retry_at))
                    failures = current.failures
                elif current.accepting:
                    return current
                # else it unloaded itself (keep_alive): load it again
            engine = engine_class(spec.backend, spec.kind)
            if current is not None:
                self._retire(current)  # its queued requests finish on the old instance
            scheduler = Scheduler(spec, engine, failures=failures, make_room=self._make_room)
            self._schedulers[spec.name] = scheduler
            return scheduler

    def _retire(self, scheduler: Scheduler) -> None:
        """Called with the lock held."""
        scheduler.retire()
        self._retired = [s for s in self._retired if not s.finished] + [scheduler]

    def _make_room(self, scheduler: Scheduler) -> bool:
        """On `scheduler`'s owner thread, before it loads: wait until fewer than MAX_LOADED_MODELS
        models are held, evicting the least recently used idle one. False if it was retired meanwhile."""
        waiting_logged = False
        while True:
            with self._lock:
                if not scheduler.accepting:
                    return False
                limit = settings.MAX_LOADED_MODELS
                held = [s for s in [*self._schedulers.values(), *self._retired] if s is not scheduler and s.holds_model]
                if limit <= 0 or len(held) < limit:
                    scheduler.holds_room = True
                    return True
                victim = next((s for s in sorted(held, key=lambda s: s.used_at) if s.evict()), None)
                if victim is not None:
                    if self._schedulers.get(victim.spec.name) is victim:
                        del self._schedulers[victim.spec.name]
                    self._retired = [s for s in self._retired if not s.finished] + [victim]
            if victim is not None:
                logger.info(
                    "Unloading %s, the least recently used idle model, to load %s (MAX_LOADED_MODELS=%d)",
                    victim.spec.name, scheduler.spec.name, limit,
                )
                victim.join()
            else:
                if not waiting_logged:
                    waiting_logged = True
                    logger.info("%s waits to load: MAX_LOADED_MODELS=%d models are loaded and busy", scheduler.spec.name, limit)
                time.sleep(ROOM_POLL_SECONDS)

    async def generate(
        self,
        spec: ModelSpec,
        request: GenerationRequest,
        *,
        stream: bool = True,
        deadline: float | None = None,
        stats: GenerationStats | None = None,
    ) -> AsyncIterator[Event]:
        """Events of one generation; closing the iterator cancels it within a token.

        With `stream=False` the text events arrive together at the end (fewer loop wake-ups).
        The tier's admission gate may refuse it (429); past `deadline` (time.monotonic()) it
        stops through the same cancellation, its Finished events saying "timeout".
        `stats`, when given, is filled with the request's timings and token counts."""
        loop = asyncio.get_running_loop()
        admission = gate_for(spec.name).admit(spec.limits)
        job = Job(request, loop, hold=not stream, admission=admission, stats=stats)
        admission.watch(loop, max_wait_seconds=spec.limits.max_wait_seconds, deadline=deadline, on_timeout=job.time_out)
        self._jobs.add(job)
        finished = 0
        try:
            while True:
                scheduler = self.scheduler(spec)
                job.request = await self.prepare(scheduler, request)
                if scheduler.submit(job, spec.keep_alive):
                    break
                await asyncio.sleep(0)  # raced with a retire: the next call makes a new scheduler
            while True:
                event = await job.events.get()
                if event is DONE:
                    if job.abort_error is not None and finished < request.n:  # stopped while queued
                        raise job.abort_error
                    return
                if event is TIMED_OUT:
                    raise admission.timeout_error(job.timed_out, spec.limits)
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Finished):
                    finished += 1
                    if event.reason == "cancelled":
                        if job.abort_error is not None:
                            raise job.abort_error  # stopped by the server, not the client: the client is told
                        if job.timed_out:
                            event = dataclasses.replace(event, reason="timeout")
                yield event
        finally:
            job.cancelled.set()
            admission.close()
            self._jobs.discard(job)

    def abort_all(self, error: ServiceError) -> int:
        """Stop every generation in progress within a token; their clients get `error`. Call on
        the event loop (graceful shutdown past its grace period). Returns how many were stopped."""
        jobs = list(self._jobs)
        for job in jobs:
            job.abort_error = error
            job.cancelled.set()
        return len(jobs)

    @staticmethod
    async def prepare(scheduler: Scheduler, request: GenerationRequest) -> GenerationRequest:
        """The request with its constraint compiled for the scheduler's loaded engine, off its thread.

        A constraint that can't be followed is a 400 here, before anything is queued; the compiled
        form travels on the job (`request.compiled`). Waits for a load in progress (the compiler
        needs the model's tokenizer); a failed load is left to the queued job to report."""
        if request.constraint is None:
            return request
        while not scheduler.wait_loaded(0):
            await asyncio.sleep(PREPARE_POLL_SECONDS)
        if scheduler.engine is None:
            return request
        compiler = getattr(scheduler.engine, "constraint_compiler", None)
        compiled = await constraint_prepare(compiler=compiler, constraint=request.constraint)
        return dataclasses.replace(request, compiled=compiled)

    async def run_batched(self, spec: ModelSpec, request: Any, *, deadline: float | None = None) -> Any:
        """The result of one embedding or rerank request, batched with whatever else is waiting.

        Admission as for `generate`; past `deadline` the request is answered 504 (a forward pass
        already computing is not interrupted)."""
        loop = asyncio.get_running_loop()
        admission = gate_for(spec.name).admit(spec.limits)
        job = Job(request, loop, streams=False, admission=admission)
        admission.watch(loop, max_wait_seconds=spec.limits.max_wait_seconds, deadline=deadline, on_timeout=job.time_out)
        result: Result | None = None
        try:
            await self._submit(spec, job)
            while True:
                event = await job.events.get()
                if event is TIMED_OUT:
                    raise admission.timeout_error(job.timed_out, spec.limits)
                if isinstance(event, Failed):
                    raise event.error
                if isinstance(event, Result):
                    result = event  # answered once the scheduler has counted it (DONE follows)
                elif event is DONE:
                    if result is None:  # pragma: no cover - an engine bug: done without an answer
                        raise InternalError(NO_ANSWER)
                    return result.value
        finally:
            job.cancelled.set()
            admission.close()

    async def _submit(self, spec: ModelSpec, job: Job) -> None:
        while not self.scheduler(spec).submit(job, spec.keep_alive):
            await asyncio.sleep(0)  # raced with a retire: the next call makes a new scheduler

    def warm(self, spec: ModelSpec, timeout: float | None = None) -> TierStatus:
        """Load `spec` now (blocking the calling thread, never the event loop); a configuration
        waiting to retry a failed load answers its failed status."""
        try:
            scheduler = self.scheduler(spec)
        except ModelUnavailable as exc:
            current = self._schedulers.get(spec.name)
            if current is not None and current.spec.load_key == spec.load_key:
                return current.status()
            return dataclasses.replace(TierStatus.unloaded(spec.name, spec.backend, spec.kind), state="failed", error=exc.message)
        scheduler.wait_loaded(timeout)
        return scheduler.status()

    def unload(self, name: str) -> bool:
        """Unload a tier once its in-flight requests finish; False if it wasn't loaded (never
        loaded, failed to load, or already unloaded itself when idle)."""
        with self._lock:
            scheduler = self._schedulers.pop(name, None)
            if scheduler is None:
                return False
            loaded = scheduler.accepting or not scheduler.finished
            self._retire(scheduler)
        return loaded

    def unload_all(self, wait: bool = False, timeout: float | None = None) -> list[str]:
        """Retire every scheduler; with `wait`, until every owner thread (earlier retired ones too)
        has ended, raising TimeoutError after `timeout` seconds rather than waiting forever."""
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
            for scheduler in schedulers:
                self._retire(scheduler)
            retired = list(self._retired)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for scheduler in retired:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not scheduler.join(left):
                    raise TimeoutError(f"The {scheduler.spec.name} model's owner thread did not end in {timeout} s.")
        return [s.spec.name for s in schedulers]

    def status(self) -> dict[str, TierStatus]:
        """Per tier: its current scheduler, else a retired one still finishing its requests."""
        with self._lock:
            current = dict(self._schedulers)
            retired = [s for s in self._retired if not s.finished]
        out = {s.spec.name: s.status() for s in retired}
        out.update({name: s.status() for name, s in current.items()})
        out = {name: s for name, s in out.items() if s.state != "unloaded"}
        out.update(upstream_health.statuses())  # remote tiers: their upstream's health (inference/remote.py)
        return out


_manager = ModelManager()


def get_manager() -> ModelManager:
    return _manager
