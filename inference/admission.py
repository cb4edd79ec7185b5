"""Admission control: how many requests may wait for a tier, how long, and each request's deadline.

One gate per tier sits in front of the model. It needs only two signals from whatever runs the
model, "this request started running" and "this request finished", and the tier's limits; it
knows nothing of queues, threads or batches, so the engine behind it can change freely.

- `admit()` refuses (429, Retry-After) when the new request would have to wait behind
  `max_waiting` others. Waiting means queued and not yet running; running requests don't count,
  and a request that can start at once (fewer than `capacity` running) never waits.
- `watch()` calls back once a request has waited `max_wait_seconds` without starting (the
  caller answers 429), and at its deadline (the caller stops it through its cancellation path:
  with text so far it ends as `length`, with none it is a 504).

Interface (kept stable for the engine rewrite):
    gate_for(tier: str) -> AdmissionGate
    AdmissionGate.capacity: int                                     # requests the engine runs at once (1)
    AdmissionGate.admit(limits: QueueLimits) -> Admission          # raises RateLimited
    Admission.started() / Admission.finished()                      # from the engine, any thread
    Admission.watch(loop, *, max_wait_seconds, deadline, on_timeout) # on the event loop
    Admission.close()                                               # the waiter is done (loop)
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Literal

from llmservice.errors import DeadlineExceeded, RateLimited

QUEUE_FULL = (
    "Tier '{tier}' already has {waiting} requests waiting to start (at most {limit}; QUEUE_MAX_WAITING). "
    "Retry after {retry} s."
)
QUEUE_WAIT_EXCEEDED = (
    "The request waited {seconds:g} s for tier '{tier}' without starting (QUEUE_MAX_WAIT_SECONDS). "
    "Retry after {retry} s."
)
DEADLINE_PASSED = "The request produced nothing before its deadline (REQUEST_TIMEOUT_SECONDS)."

Timeout = Literal["queue", "deadline"]


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """A tier's admission limits (global settings, or the tier's own values)."""

    max_waiting: int = 32  # requests queued and not yet running; past it: 429
    max_wait_seconds: float = 60.0  # longest a request may wait to start; past it: 429


def request_deadline(timeout_seconds: float | None) -> float | None:
    """A deadline `timeout_seconds` from now on the monotonic clock (the event loop's clock)."""
    return time.monotonic() + timeout_seconds if timeout_seconds and timeout_seconds > 0 else None


class AdmissionGate:
    """The gate of one tier: counts waiting and running requests, refuses past the limits."""

    # Seconds a request takes to run, averaged over recent ones: the basis of Retry-After.
    SMOOTHING = 0.2

    def __init__(self, tier: str, capacity: int = 1):
        self.tier = tier
        self.capacity = capacity  # how many requests the engine runs at once; set by the engine
        self.waiting = 0
        self.running = 0
        self.refused = 0
        self._run_seconds = 1.0
        self._lock = threading.Lock()

    def admit(self, limits: QueueLimits) -> "Admission":
        """A new waiting request, or RateLimited (429) when the tier has too many waiting."""
        with self._lock:
            free_slots = max(0, self.capacity - self.running)
            if self.waiting >= max(0, limits.max_waiting) + free_slots:
                self.refused += 1
                retry = self.retry_after()
                raise RateLimited(
                    QUEUE_FULL.format(tier=self.tier, waiting=self.waiting, limit=limits.max_waiting, retry=retry),
                    retry_after=retry,
                )
            self.waiting += 1
        return Admission(self)

    def retry_after(self) -> int:
        """Whole seconds until a waiting slot is likely free: about one request's running time."""
        return max(1, math.ceil(self._run_seconds))

    def counts(self) -> tuple[int, int]:
        """(waiting, running) right now."""
        with self._lock:
            return self.waiting, self.running

    def _ran(self, seconds: float) -> None:
        self._run_seconds += self.SMOOTHING * (seconds - self._run_seconds)


class Admission:
    """One request's passage through its gate: waiting -> running -> done (or waiting -> done)."""

    __slots__ = ("gate", "state", "_started_at", "_timers")

    def __init__(self, gate: AdmissionGate):
        self.gate = gate
        self.state = "waiting"
        self._started_at = 0.0
        self._timers: list[asyncio.TimerHandle] = []

    @property
    def running(self) -> bool:
        return self.state == "running"

    # --- signals from the engine (any thread) ----------------------------------------------
    def started(self) -> None:
        """The request left the queue and runs now."""
        gate = self.gate
        with gate._lock:
            if self.state != "waiting":
                return  # it gave up waiting meanwhile: its slot is already free
            self.state = "running"
            gate.waiting -= 1
            gate.running += 1
        self._started_at = time.monotonic()

    def finished(self) -> None:
        """The request is done (idempotent)."""
        gate = self.gate
        with gate._lock:
            if self.state == "waiting":
                gate.waiting -= 1
            elif self.state == "running":
                gate.running -= 1
                gate._ran(time.monotonic() - self._started_at)
            self.state = "done"

    # --- the waiting request (event loop) -------------------------------------------------
    def watch(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_wait_seconds: float | None,
        deadline: float | None,
        on_timeout: Callable[[Timeout], None],
    ) -> None:
        """Call `on_timeout("queue")` if the request is still waiting after `max_wait_seconds`,
        and `on_timeout("deadline")` at `deadline` (time.monotonic()) unless it is done by then."""
        if max_wait_seconds is not None and max_wait_seconds > 0:
            self._timers.append(loop.call_later(max_wait_seconds, self._queue_timer, on_timeout))
        if deadline is not None:
            self._timers.append(loop.call_later(max(0.0, deadline - time.monotonic()), self._deadline_timer, on_timeout))

    def _queue_timer(self, on_timeout: Callable[[Timeout], None]) -> None:
        if self.state == "waiting":
            on_timeout("queue")

    def _deadline_timer(self, on_timeout: Callable[[Timeout], None]) -> None:
        if self.state != "done":
            on_timeout("deadline")

    def close(self) -> None:
        """The waiting request is done with this pass: stop the timers; a request that never
        started frees its waiting slot now (a running one is finished by the engine)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        gate = self.gate
        with gate._lock:
            if self.state == "waiting":
                gate.waiting -= 1
                self.state = "done"

    def timeout_error(self, kind: Timeout, limits: QueueLimits) -> Exception:
        """The error of a request that timed out before producing anything."""
        if kind == "queue":
            retry = self.gate.retry_after()
            return RateLimited(
                QUEUE_WAIT_EXCEEDED.format(seconds=limits.max_wait_seconds, tier=self.gate.tier, retry=retry),
                retry_after=retry,
            )
        return DeadlineExceeded(DEADLINE_PASSED)


_gates: dict[str, AdmissionGate] = {}
_gates_lock = threading.Lock()


def gate_for(tier: str) -> AdmissionGate:
    """The gate of `tier` (one per tier name for the life of the process)."""
    with _gates_lock:
        gate = _gates.get(tier)
        if gate is None:
            gate = _gates[tier] = AdmissionGate(tier)
        return gate
