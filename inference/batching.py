"""Dynamic batching for embedding and rerank models.

Same ownership as generation (one owner thread and one queue per loaded model), but when the
owner thread takes a job it also drains every job already waiting, and runs the compatible ones
through the model in one batched forward pass instead of one after another. Each request still
gets its own result (or its own error) back, as a value on its own future.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from typing import Any

from django.conf import settings

from llmservice.errors import InternalError, ModelUnavailable, ServiceError

from .admission import Admission, QueueLimits, Timeout
from .manager import _STOP, ModelWorker, RequestStat, WorkerStatus

logger = logging.getLogger(__name__)

BATCHED_KINDS = ("embedding", "rerank")
MAX_JOBS_PER_BATCH = 64


class BatchJob:
    """One embedding or rerank request waiting for its result on the event loop."""

    __slots__ = ("request", "loop", "future", "cancelled", "queued_at", "admission", "limits")

    def __init__(
        self, request: Any, loop: asyncio.AbstractEventLoop, *, admission: Admission | None = None, limits: QueueLimits | None = None
    ):
        self.request = request
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.cancelled = threading.Event()
        self.queued_at = time.perf_counter()
        self.admission = admission
        self.limits = limits or QueueLimits()

    def time_out(self, kind: Timeout) -> None:
        """On the event loop: answered now (429 or 504); a batch already computing runs to its end."""
        self.cancelled.set()
        if not self.future.done() and self.admission is not None:
            self.future.set_exception(self.admission.timeout_error(kind, self.limits))

    def resolve(self, outcome: Any) -> None:
        """Hand a result or an exception (as a value) back to the waiting request."""
        try:
            self.loop.call_soon_threadsafe(self._settle, outcome)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    def _settle(self, outcome: Any) -> None:
        if self.future.done():  # the client went away
            return
        if isinstance(outcome, BaseException):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


class BatchWorker(ModelWorker):
    """Owns one embedding or rerank model; serves everything waiting in its queue as one batch."""

    def __init__(self, spec, **kwargs):
        self.batches = 0  # backend.run calls: one batched forward pass per group of compatible requests
        super().__init__(spec, **kwargs)

    def status(self) -> WorkerStatus:
        return dataclasses.replace(super().status(), batches=self.batches)

    def _run(self) -> None:
        backend = self._load()
        if backend is not None and not hasattr(backend, "prepare"):  # e.g. a GGUF chat backend
            self.error = f"Backend '{self.spec.backend}' cannot serve {self.spec.kind} tier '{self.spec.name}'."
            logger.error("%s", self.error)
            backend.close()
            backend = None
            with self._lock:
                self.state = "failed"
                self._accepting = False
                self._queue.put(_STOP)
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is _STOP:
                break
            jobs = [job]
            while len(jobs) < MAX_JOBS_PER_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:  # serve what came before the stop, then unload
                    stopping = True
                    break
                jobs.append(more)
            if backend is None:
                for job in jobs:
                    self._done(job)
                    job.resolve(ModelUnavailable(self.error or "Model failed to load."))
                continue
            self._serve_batch(backend, jobs)
        self._close(backend)

    def _serve_batch(self, backend, jobs: list[BatchJob]) -> None:
        groups: dict[Any, list[tuple[BatchJob, Any]]] = {}
        for job in jobs:
            if job.cancelled.is_set():
                self._done(job)
                continue
            if job.admission is not None:
                job.admission.started()
            try:
                prepared = backend.prepare(job.request)
            except Exception as exc:
                self._done(job)
                job.resolve(self._client_error(exc))
                continue
            groups.setdefault(prepared.group, []).append((job, prepared))
        for items in groups.values():
            self.batches += 1
            try:
                results = backend.run([prepared for _, prepared in items])
            except Exception as exc:
                outcomes = [self._client_error(exc)] * len(items)
            else:
                outcomes = results
            for (job, _), outcome in zip(items, outcomes):
                self.recent.append(RequestStat(time.perf_counter() - job.queued_at, None, 0))
                self._done(job)
                job.resolve(outcome)
        if len(jobs) > 1:
            logger.debug("%s: served %d requests in %d batch(es)", self.spec.name, len(jobs), len(groups))

    def _client_error(self, exc: Exception) -> ServiceError:
        if isinstance(exc, ServiceError):
            return exc
        logger.error("%s: batch failed", self.spec.name, exc_info=exc)
        return InternalError("The model failed while computing; see the server log.")

    def _done(self, job: BatchJob) -> None:
        """Count a request; called before it is resolved, so a status read after it agrees."""
        if job.admission is not None:
            job.admission.finished()
        with self._lock:
            self.in_flight -= 1
            self.requests += 1
            self.last_used = time.time()


def batch_max_items() -> int:
    return max(1, settings.BATCH_MAX_ITEMS)
