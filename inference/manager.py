"""Lazily loaded models: one owner thread and one FIFO queue per loaded model.

The event loop never runs model code. A request puts a job on its model's queue and waits on
its own asyncio queue; the owner thread feeds it events, and exceptions cross as values
(the pattern of mlx-lm's `ResponseGenerator`). A new request never interrupts a running one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator

from llmservice.errors import InternalError, ModelUnavailable, ServiceError
from llmservice.logs import request_id_var

from .admission import Admission, Timeout, gate_for
from .backends import backend_class
from .constraints import constraint_prepare
from .events import Delta, Event, Failed, Finished, Started
from .load_errors import load_backoff, public_load_error, retry_message
from .params import GenerationRequest, ModelSpec
from .stats import GenerationStats

logger = logging.getLogger(__name__)

PREPARE_POLL_SECONDS = 0.02  # how often a constrained request checks on a model still loading
_DONE = object()  # end of one job's events
_STOP = object()  # end of a worker's queue
_TIMED_OUT = object()  # wakes a request whose queue wait or deadline passed before it started


class _Job:
    """One generation's hand-over from the owner thread to the waiting request.

    Waking the event loop costs CPU that the model's threads want on a small machine, so it is
    woken once per batch of events, not once per token: events collect in `_pending` and a
    wake-up is scheduled only when none is already due. A non-streaming request (`hold`) is
    woken only for its first and last events: its text is only needed at the end.
    """

    __slots__ = (
        "request", "loop", "events", "cancelled", "admission", "timed_out", "_pending", "_wake_due", "_held",
        "stats", "request_id", "abort_error",
    )

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        *,
        hold: bool = False,
        admission: Admission | None = None,
        stats: GenerationStats | None = None,
    ):
        self.request = request
        self.loop = loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self.admission = admission
        self.timed_out: Timeout | None = None
        self.stats = stats
        if stats is not None:
            stats.queued_at = time.perf_counter()
        self.request_id = request_id_var.get()  # carried to the owner thread's log lines
        self.abort_error: ServiceError | None = None  # set with `cancelled` when the server stops it
        self._pending: deque = deque()
        self._wake_due = False
        self._held: list | None = [] if hold else None

    def time_out(self, kind: Timeout) -> None:
        """On the event loop: the queue wait or the deadline passed. A running job stops through
        its cancellation (its last events say "timeout"); a waiting one is answered now."""
        self.timed_out = kind
        self.cancelled.set()
        if self.admission is None or not self.admission.running:
            self.events.put_nowait(_TIMED_OUT)

    def emit(self, event: object) -> None:
        """Called on the owner thread."""
        if self._held is not None and isinstance(event, Delta):
            self._held.append(event)
            return
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

    def _deliver(self) -> None:
        """Called on the event loop. Clearing the flag first means no event is ever stranded:
        one appended after this line schedules its own wake-up."""
        self._wake_due = False
        while self._pending:
            self.events.put_nowait(self._pending.popleft())


@dataclass(frozen=True)
class RequestStat:
    """How one finished request went (kept for the last RECENT requests of a worker)."""

    seconds: float
    first_token_seconds: float | None
    completion_tokens: int

    @property
    def tokens_per_second(self) -> float | None:
        decode = self.seconds - (self.first_token_seconds or 0.0)
        return self.completion_tokens / decode if self.completion_tokens > 1 and decode > 0 else None


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    backend: str
    state: str  # loading | ready | failed | retiring | unloaded (retired and closed)
    load_seconds: float | None
    requests: int
    in_flight: int  # queued + running
    last_used: float | None
    error: str | None
    recent: tuple[RequestStat, ...] = ()
    failures: int = 0  # consecutive failed loads of this configuration
    retry_at: float | None = None  # time.time() of the next load attempt after a failure
    batches: int | None = None  # batched computations run (embedding and rerank models only)

    @property
    def queued(self) -> int:
        return max(0, self.in_flight - 1)


class ModelWorker:
    """Owns one loaded model: loads it on its own thread, then serves its queue in order."""

    RECENT = 50

    def __init__(self, spec: ModelSpec, *, failures: int = 0):
        self.spec = spec
        self.state = "loading"
        self.load_seconds: float | None = None
        self.error: str | None = None
        self.failures = failures  # consecutive failed loads before this one
        self.retry_at: float | None = None
        self.requests = 0
        self.in_flight = 0
        self.last_used: float | None = None
        self.recent: deque[RequestStat] = deque(maxlen=self.RECENT)
        self.backend = None  # set once loaded; read by the prepare step (its constraint compiler)
        self._accepting = True
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"model-{spec.name}", daemon=True)
        self._thread.start()

    # --- called from any thread ----------------------------------------------------------
    def submit(self, job: _Job) -> bool:
        """Queue `job`; False if this worker no longer takes work (retired or failed)."""
        with self._lock:
            if not self._accepting:
                return False
            self.in_flight += 1
            self._queue.put(job)
            return True

    def retire(self) -> None:
        """Stop taking work; unload once the jobs already queued have finished."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                if self.state in ("loading", "ready"):
                    self.state = "retiring"
                self._queue.put(_STOP)

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._loaded.wait(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the owner thread to end (its model closed); False if it is still running."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """The owner thread has ended: the model is closed (or never loaded)."""
        return not self._thread.is_alive()

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            name=self.spec.name,
            backend=self.spec.backend,
            state=self.state,
            load_seconds=self.load_seconds,
            requests=self.requests,
            in_flight=self.in_flight,
            last_used=self.last_used,
            error=self.error,
            recent=tuple(self.recent),
            failures=self.failures,
            retry_at=self.retry_at,
        )

    # --- the owner thread ----------------------------------------------------------------
    def _run(self) -> None:
        backend = self._load()
        while True:
            job = self._queue.get()
            if job is _STOP:
                break
            if backend is None:
                job.emit(Failed(ModelUnavailable(self.error or "Model failed to load.")))
                self._finish(job)
                continue
            self._serve(backend, job)
        self._close(backend)

    def _close(self, backend) -> None:
        """Close the model on its owner thread; a retired worker then reports "unloaded"."""
        if backend is not None:
            backend.close()
            logger.info("Unloaded %s model", self.spec.name)
        with self._lock:
            if self.state != "failed":
                self.state = "unloaded"

    def _load(self):
        started = time.perf_counter()
        try:
            backend = backend_class(self.spec.backend).load(self.spec)
        except Exception as exc:  # every failure becomes a 503 for the waiting requests
            if not isinstance(exc, ServiceError):
                logger.exception("Loading %s failed", self.spec.name)
            logger.error("Loading %s failed: %s", self.spec.name, exc)
            self.failures += 1
            self.retry_at = time.time() + load_backoff(self.failures)
            self.error = public_load_error(self.spec, exc)
            with self._lock:
                self.state = "failed"
                self._accepting = False
                self._queue.put(_STOP)
            self._loaded.set()
            return None
        self.load_seconds = time.perf_counter() - started
        self.backend = backend
        with self._lock:
            if self.state == "loading":
                self.state = "ready"
        logger.info("Loaded %s model in %.2fs", self.spec.name, self.load_seconds)
        self._loaded.set()
        return backend

    def _serve(self, backend, job: _Job) -> None:
        """Run the job's choices one after another; events of choice i carry index i."""
        if job.admission is not None:
            job.admission.started()
        context = request_id_var.set(job.request_id)
        if job.stats is not None:
            job.stats.started_at = time.perf_counter()
        try:
            for index in range(job.request.n):
                if job.cancelled.is_set():
                    if job.abort_error is not None:
                        raise job.abort_error
                    return
                self._serve_choice(backend, job, index)
        except ServiceError as exc:
            job.emit(Failed(exc))
        except Exception:
            logger.exception("%s: generation failed", self.spec.name)
            job.emit(Failed(InternalError("The model failed while generating; see the server log.")))
        finally:
            self._finish(job)
            request_id_var.reset(context)

    def _serve_choice(self, backend, job: _Job, index: int) -> None:
        started = time.perf_counter()
        first_token = None
        for event in backend.generate(job.request.choice(index), job.cancelled.is_set):
            if isinstance(event, Started):
                if index:
                    continue  # one Started per request
            elif index:
                event = dataclasses.replace(event, index=index)
            if job.abort_error is not None and isinstance(event, Finished) and event.reason == "cancelled":
                raise job.abort_error  # stopped by the server, not the client: the client is told
            job.emit(event)
            if first_token is None and isinstance(event, Delta):
                first_token = time.perf_counter() - started
                if job.stats is not None and job.stats.first_token_at is None:
                    job.stats.first_token_at = started + first_token
            elif isinstance(event, Finished):
                ended = time.perf_counter()
                self.recent.append(RequestStat(ended - started, first_token, event.completion_tokens))
                if job.stats is not None:
                    job.stats.choice_finished(started=started, first_token=first_token, ended=ended, finished=event)
                if event.reason == "cancelled":
                    logger.info(
                        "%s: generation %s after %d tokens",
                        self.spec.name,
                        "stopped at the request's deadline" if job.timed_out else "cancelled by the client",
                        event.completion_tokens,
                    )

    def _finish(self, job: _Job) -> None:
        # Counted before the request hears it is done, so a status read after it agrees.
        with self._lock:
            self.in_flight -= 1
            self.requests += 1
            self.last_used = time.time()
        if job.admission is not None:
            job.admission.finished()
        job.emit(_DONE)


class ModelManager:
    """The process's loaded models, by tier name. Loading happens on first use.

    A retired worker (unloaded, or replaced after its tier's load parameters changed) stays
    visible as "retiring" while it finishes its queued requests, unless a new one serves its tier.
    """

    def __init__(self) -> None:
        self._workers: dict[str, ModelWorker] = {}
        self._retired: list[ModelWorker] = []
        self._lock = threading.Lock()
        self._jobs: set[_Job] = set()  # generations in progress; touched on the event loop only

    def worker(self, spec: ModelSpec) -> ModelWorker:
        """The worker serving `spec`, starting a load if there is none (or a stale one).

        A configuration that failed to load is not retried before its `retry_at` (the wait
        doubles with each failure): until then this raises ModelUnavailable (503)."""
        with self._lock:
            current = self._workers.get(spec.name)
            failures = 0
            if current is not None and current.spec.load_key == spec.load_key:
                if current.state != "failed":
                    return current
                if current.retry_at is not None and time.time() < current.retry_at:
                    raise ModelUnavailable(retry_message(current.error, current.retry_at))
                failures = current.failures
            if current is not None:
                self._retire(current)  # its queued requests finish on the old instance
            worker = _worker_class(spec)(spec, failures=failures)
            self._workers[spec.name] = worker
            return worker

    def _retire(self, worker: ModelWorker) -> None:
        """Called with the lock held."""
        worker.retire()
        self._retired = [w for w in self._retired if not w.finished] + [worker]

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
        job = _Job(request, loop, hold=not stream, admission=admission, stats=stats)
        admission.watch(loop, max_wait_seconds=spec.limits.max_wait_seconds, deadline=deadline, on_timeout=job.time_out)
        self._jobs.add(job)
        try:
            while True:
                worker = self.worker(spec)
                job.request = await self.prepare(worker, request)
                if worker.submit(job):
                    break
                await asyncio.sleep(0)  # raced with a retire: the next call makes a new worker
            while True:
                event = await job.events.get()
                if event is _DONE:
                    return
                if event is _TIMED_OUT:
                    raise admission.timeout_error(job.timed_out, spec.limits)
                if isinstance(event, Failed):
                    raise event.error
                if job.timed_out and isinstance(event, Finished) and event.reason == "cancelled":
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
    async def prepare(worker: ModelWorker, request: GenerationRequest) -> GenerationRequest:
        """The request with its constraint compiled for the worker's loaded model, off its thread.

        A constraint that can't be followed is a 400 here, before anything is queued. Waits for a
        load in progress (the compiler needs the model's tokenizer); a failed load is left to the
        queued job to report."""
        if request.constraint is None:
            return request
        while not worker.wait_loaded(0):
            await asyncio.sleep(PREPARE_POLL_SECONDS)
        if worker.backend is None:
            return request
        compiler = getattr(worker.backend, "constraint_compiler", None)
        compiled = await constraint_prepare(compiler=compiler, constraint=request.constraint)
        return dataclasses.replace(request, compiled=compiled)

    async def run_batched(self, spec: ModelSpec, request, *, deadline: float | None = None):
        """The result of one embedding or rerank request, batched with whatever else is waiting.

        Admission as for `generate`; past `deadline` the request is answered 504 (a batch
        already computing is not interrupted)."""
        from .batching import BatchJob

        loop = asyncio.get_running_loop()
        admission = gate_for(spec.name).admit(spec.limits)
        job = BatchJob(request, loop, admission=admission, limits=spec.limits)
        admission.watch(loop, max_wait_seconds=spec.limits.max_wait_seconds, deadline=deadline, on_timeout=job.time_out)
        try:
            while not self.worker(spec).submit(job):
                await asyncio.sleep(0)  # raced with a retire: the next call makes a new worker
            return await job.future
        finally:
            job.cancelled.set()
            admission.close()

    def warm(self, spec: ModelSpec, timeout: float | None = None) -> WorkerStatus:
        """Load `spec` now (blocking the calling thread, never the event loop); a configuration
        waiting to retry a failed load answers its failed status."""
        try:
            worker = self.worker(spec)
        except ModelUnavailable:
            return self._workers[spec.name].status()
        worker.wait_loaded(timeout)
        return worker.status()

    def unload(self, name: str) -> bool:
        """Unload a tier once its in-flight requests finish; False if it wasn't loaded."""
        with self._lock:
            worker = self._workers.pop(name, None)
            if worker is None:
                return False
            self._retire(worker)
        return True

    def unload_all(self, wait: bool = False, timeout: float | None = None) -> list[str]:
        """Retire every worker; with `wait`, until every owner thread (earlier retired ones too)
        has ended, raising TimeoutError after `timeout` seconds rather than waiting forever."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
            for worker in workers:
                self._retire(worker)
            retired = list(self._retired)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for worker in retired:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not worker.join(left):
                    raise TimeoutError(f"The {worker.spec.name} model's owner thread did not end in {timeout} s.")
        return [w.spec.name for w in workers]

    def status(self) -> dict[str, WorkerStatus]:
        """Per tier: its current worker, else a retired one still finishing its requests."""
        with self._lock:
            workers = dict(self._workers)
            retired = [w for w in self._retired if not w.finished]
        out = {w.spec.name: w.status() for w in retired}
        out.update({name: w.status() for name, w in workers.items()})
        return {name: s for name, s in out.items() if s.state != "unloaded"}


def _worker_class(spec: ModelSpec) -> type[ModelWorker]:
    """Embedding and rerank models batch concurrent requests (inference/batching.py)."""
    from .batching import BATCHED_KINDS, BatchWorker

    return BatchWorker if spec.kind in BATCHED_KINDS else ModelWorker


_manager = ModelManager()


def get_manager() -> ModelManager:
    return _manager
