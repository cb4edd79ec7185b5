"""One request's hand-over between the event loop and its model's owner thread.

Events cross threads as values on the request's own asyncio queue (mlx-lm's `ResponseGenerator`
pattern); the owner thread never blocks on the event loop and the loop never runs model code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any

from llmservice.errors import ServiceError
from llmservice.logs import request_id_var

from .admission import Admission, Timeout
from .events import Delta, Finished, Result
from .stats import GenerationStats
from .status import RequestStat

DONE = object()  # the last thing a job's queue carries: the scheduler is done with it
TIMED_OUT = object()  # wakes a request whose queue wait or deadline passed while it could not be stopped


class Job:
    """One request in flight: what the engine serves (`request`) and how its events get back.

    Waking the event loop costs CPU that the model's threads want on a small machine, so it is
    woken once per batch of events, not once per token: events collect in `_pending` and a
    wake-up is scheduled only when none is already due. A held job (a non-streaming generation)
    is woken only for its first and last events: its text is only needed at the end.
    """

    __slots__ = (
        "request", "loop", "events", "cancelled", "admission", "streams", "timed_out", "queued_at", "admitted_at",
        "recent", "stats", "request_id", "abort_error", "completion_tokens", "_first_token", "_pending", "_wake_due", "_held",
    )

    def __init__(
        self,
        request: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        streams: bool = True,
        hold: bool = False,
        admission: Admission | None = None,
        stats: GenerationStats | None = None,
    ):
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.admission = admission
        self.streams = streams  # False: answered in one piece (a Result); a running one can't be cut short
        self.timed_out: Timeout | None = None
        self.queued_at = time.perf_counter()
        self.admitted_at: float | None = None
        self.recent: deque[RequestStat] | None = None  # where the owner thread records how each choice went
        self.completion_tokens = 0  # over every choice that finished (what a cancelled request's log line says)
        self.stats = stats  # the request's own timings and token counts (access log, metrics), if asked for
        if stats is not None:
            stats.queued_at = self.queued_at
        self.request_id = request_id_var.get()  # carried to the owner thread's log lines
        self.abort_error: ServiceError | None = None  # set with `cancelled` when the server stops it
        self._first_token: dict[int, float] = {}
        self._pending: deque = deque()
        self._wake_due = False
        self._held: list | None = [] if hold else None

    # --- the event loop -----------------------------------------------------------------------
    def time_out(self, kind: Timeout) -> None:
        """The queue wait or the deadline passed. A running generation stops through its
        cancellation (its last events say "timeout"); anything else is answered now."""
        self.timed_out = kind
        self.cancelled.set()
        if not self.streams or self.admission is None or not self.admission.running:
            self.events.put_nowait(TIMED_OUT)

    def _deliver(self) -> None:
        """Clearing the flag first means no event is ever stranded: one appended after this line
        schedules its own wake-up."""
        self._wake_due = False
        while self._pending:
            self.events.put_nowait(self._pending.popleft())

    # --- the owner thread ---------------------------------------------------------------------
    def admitted(self, recent: deque[RequestStat]) -> None:
        """The engine took the job: its clock starts, and each choice's stats go to `recent`."""
        self.admitted_at = time.perf_counter()
        self.recent = recent
        if self.stats is not None:
            self.stats.started_at = self.admitted_at
        if self.admission is not None:
            self.admission.started()

    def emit(self, event: object) -> None:
        cls = type(event)
        if cls is Delta:
            if event.index not in self._first_token:
                self._first_token[event.index] = now = time.perf_counter()
                if self.stats is not None and self.stats.first_token_at is None:
                    self.stats.first_token_at = now
            if self._held is not None:
                self._held.append(event)
                return
        elif cls is Finished or cls is Result:
            if cls is Finished:
                self.completion_tokens += event.completion_tokens
            self._record(event)
        if self._held:
            self._pending.extend(self._held)
            self._held.clear()
        self._pending.append(event)
        if not self._wake_due:
            self._wake_due = True
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self.cancelled.set()

    def _record(self, event: Finished | Result) -> None:
        if self.recent is None or self.admitted_at is None:
            return
        now = time.perf_counter()
        if isinstance(event, Result):
            self.recent.append(RequestStat(now - self.queued_at, None, 0))
            return
        first = self._first_token.get(event.index)
        first_token = None if first is None else first - self.admitted_at
        self.recent.append(RequestStat(now - self.admitted_at, first_token, event.completion_tokens))
        if self.stats is not None:
            self.stats.choice_finished(started=self.admitted_at, first_token=first_token, ended=now, finished=event)
