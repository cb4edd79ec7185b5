"""One loaded model's owner thread: it loads the engine, then feeds it jobs from the model's queue.

The loop (the engine contract, inference/engines/base.py): admit queued jobs in arrival order while
the engine has free slots, abort the admitted jobs whose request was cancelled, step while any job
is active, finish the jobs a step returns, and block on the queue when there is nothing to do. A
new request never interrupts a running one; with every slot busy it waits in the queue (behind
the tier's admission gate, which learns the engine's parallelism here).

Idle unload (keep_alive): when the last request ends, the scheduler notes when it will unload
(`unload_at`) and its owner thread waits on the queue no longer than that; nothing runs per token.
If nothing arrived by then it stops taking work and closes the model, under the same lock that
`submit` takes, so a request either lands before (and is served) or sees it gone (and the manager
starts a new load).
"""

from __future__ import annotations

import logging
import queue
import threading
import math
import time
from collections import deque
from typing import Callable

from llmservice.errors import InternalError, ModelUnavailable, ServiceError
from llmservice.logs import request_id_var

from .admission import gate_for
from .engines.base import Engine, EngineStats
from .events import Failed
from .jobs import DONE, Job
from .load_errors import load_backoff, public_load_error
from .params import ModelSpec
from .status import RequestStat, TierState, TierStatus

logger = logging.getLogger(__name__)

STOP = object()  # end of a scheduler's queue
STATS_SECONDS = 0.05  # how often a busy scheduler refreshes its engine's stats for status readers
ENGINE_FAILED = "The model failed while generating; see the server log."
UNLOADED_BEFORE_LOAD = "The model was unloaded before it finished loading; retry the request."


def gather(engine: Engine) -> float:
    """Seconds `engine` wants to wait for more jobs before its next step (the optional
    `gather_seconds()` of the engine contract; engines without it step at once)."""
    wanted = getattr(engine, "gather_seconds", None)
    return wanted() if wanted is not None else 0.0


class Scheduler:
    """Owns one loaded model (of any engine): loads it on its own thread, then serves its queue."""

    RECENT = 50

    def __init__(
        self,
        spec: ModelSpec,
        engine_class: type[Engine],
        *,
        failures: int = 0,
        make_room: Callable[["Scheduler"], bool] | None = None,
    ):
        self.spec = spec
        self.engine_class = engine_class
        self.engine: Engine | None = None  # set once loaded (read by the generate path's prepare step)
        self.state: TierState = "loading"
        self.load_seconds: float | None = None
        self.error: str | None = None
        self.failures = failures  # consecutive failed loads before this one
        self.retry_at: float | None = None
        self.requests = 0
        self.running = 0
        self.queued = 0
        self.last_used: float | None = None
        self.recent: deque[RequestStat] = deque(maxlen=self.RECENT)
        self.keep_alive = spec.keep_alive  # seconds idle before unloading (math.inf: never); the latest request's
        self.unload_at: float | None = None  # time.time() it unloads if nothing arrives; None: busy, or never
        self.used_at = time.monotonic()  # last submit or finish: least recently used goes first
        # Called on the owner thread before loading: waits for room under MAX_LOADED_MODELS (the
        # manager's), False if this scheduler was retired meanwhile. Without it the room is ours.
        self._make_room = make_room
        self.holds_room = make_room is None
        self._stats: EngineStats | None = None
        self._accepting = True
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"model-{spec.name}", daemon=True)
        self._thread.start()

    # --- called from any thread ----------------------------------------------------------
    def submit(self, job: Job, keep_alive: float | None = None) -> bool:
        """Queue `job`; False if this scheduler no longer takes work (retired, failed or idle-unloaded).
        `keep_alive` (seconds) replaces the model's from now on, as in Ollama."""
        with self._lock:
            if not self._accepting:
                return False
            if keep_alive is not None:
                self.keep_alive = keep_alive
            self.unload_at = None
            self.used_at = time.monotonic()
            self.queued += 1
            self._queue.put(job)
            return True

    def retire(self) -> None:
        """Stop taking work; unload once the jobs already queued have finished."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                if self.state in ("loading", "ready"):
                    self.state = "retiring"
                self._queue.put(STOP)

    def evict(self) -> bool:
        """Retire now if loaded and idle (nothing running or queued); False if busy or not loaded."""
        with self._lock:
            if not (self._accepting and self.state == "ready" and self.running == 0 and self.queued == 0):
                return False
        self.retire()
        return True

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def holds_model(self) -> bool:
        """Its model is loading, loaded or closing: it counts against MAX_LOADED_MODELS."""
        return self.holds_room and not self.finished

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

    def status(self) -> TierStatus:
        with self._lock:
            running, queued, state = self.running, self.queued, self.state
        return TierStatus(
            name=self.spec.name,
            backend=self.spec.backend,
            kind=self.spec.kind,
            state=state,
            load_seconds=self.load_seconds,
            running=running,
            queued=queued,
            requests=self.requests,
            last_used=self.last_used,
            keep_alive=None if math.isinf(self.keep_alive) else self.keep_alive,
            unload_at=self.unload_at if state == "ready" else None,
            error=self.error,
            failures=self.failures,
            retry_at=self.retry_at,
            recent=tuple(self.recent),
            engine=self._stats if state in ("ready", "retiring") else None,
        )

    # --- the owner thread ----------------------------------------------------------------
    def _run(self) -> None:
        if self._make_room is not None and not self._make_room(self):
            self.error = UNLOADED_BEFORE_LOAD
            self._loaded.set()
            self._refuse_all()
            with self._lock:
                self.state = "unloaded"
            return
        engine = self._load()
        if engine is None:
            self._refuse_all()
            return
        try:
            self._serve(engine)
        finally:
            self._close(engine)

    def _serve(self, engine: Engine) -> None:
        waiting: deque[Job] = deque()  # taken off the queue, not yet admitted (every slot busy)
        running: set[Job] = set()
        stopping = False
        housekeeping_due = 0.0
        while True:
            idle = not waiting and not running
            if idle and stopping:
                return
            stopping = self._take(waiting, block=idle, timeout=self._idle_timeout() if idle else None) or stopping
            if idle and not waiting and not stopping and self._expire():
                return
            admitted = False
            while waiting and engine.free_slots() > 0:
                job = waiting.popleft()
                if job.cancelled.is_set():  # its client left (or it timed out) while it waited
                    self._finish(job, served=False)
                elif self._admit(engine, job):
                    running.add(job)
                    admitted = True
            for job in [j for j in running if j.cancelled.is_set()]:
                self._abort(engine, job)
                running.discard(job)
            if running or admitted:
                hold = gather(engine)
                if hold > 0:  # the engine waits for requests about to join this step
                    stopping = self._take(waiting, block=True, timeout=hold) or stopping
                    continue
                self._step(engine, running)
            now = time.perf_counter()
            if now >= housekeeping_due or admitted or not running:
                housekeeping_due = now + STATS_SECONDS
                self._stats = engine.stats()
                if waiting:  # a job cancelled while every slot stays busy leaves the queue now
                    for job in [j for j in waiting if j.cancelled.is_set()]:
                        waiting.remove(job)
                        self._finish(job, served=False)

    def _admit(self, engine: Engine, job: Job) -> bool:
        with self._lock:
            self.queued -= 1
            self.running += 1
        job.admitted(self.recent)
        context = request_id_var.set(job.request_id)
        try:
            engine.admit(job)
        except Exception:  # an engine bug: this request fails, the model keeps serving
            logger.exception("%s: admitting a request failed", self.spec.name)
            job.emit(Failed(InternalError(ENGINE_FAILED)))
            self._finish(job)
            return False
        finally:
            request_id_var.reset(context)
        return True

    def _step(self, engine: Engine, running: set[Job]) -> None:
        # The log lines of a step serving one request carry its id; a batch's carry none.
        context = request_id_var.set(next(iter(running)).request_id if len(running) == 1 else "")
        try:
            done = engine.step()
        except Exception:  # an engine bug: the requests it was serving fail, the model keeps serving
            logger.exception("%s: a step failed", self.spec.name)
            done = None
        finally:
            request_id_var.reset(context)
        if done is None:
            for job in list(running):
                job.emit(Failed(InternalError(ENGINE_FAILED)))
                self._abort(engine, job)
                running.discard(job)
            return
        if done:  # counters update before a request hears it is done, so a status read after it agrees
            self._stats = engine.stats()
        for job in done:
            if job in running:
                running.discard(job)
                if job.cancelled.is_set():  # its engine saw the flag before the scheduler did
                    context = request_id_var.set(job.request_id)
                    self._log_stop(job)
                    request_id_var.reset(context)
                self._finish(job)

    def _abort(self, engine: Engine, job: Job) -> None:
        context = request_id_var.set(job.request_id)
        try:
            engine.abort(job)
            self._stats = engine.stats()
        except Exception:
            logger.exception("%s: aborting a request failed", self.spec.name)
        self._log_stop(job)
        request_id_var.reset(context)
        self._finish(job)

    def _log_stop(self, job: Job) -> None:
        """Says why a job ended early, whether the scheduler aborted it or its engine saw the flag first."""
        if job.cancelled.is_set():
            if job.abort_error is not None:
                why = "stopped by the server"
            else:
                why = "stopped at the request's deadline" if job.timed_out else "cancelled by the client"
            logger.info("%s: generation %s after %d tokens", self.spec.name, why, job.completion_tokens)

    def _take(self, waiting: deque[Job], *, block: bool, timeout: float | None = None) -> bool:
        """Move queued jobs to `waiting` (waiting for one when `block`, at most `timeout` seconds);
        True once STOP was seen."""
        try:
            item = self._queue.get(timeout=timeout) if block else self._queue.get_nowait()
            while True:
                if item is STOP:
                    return True  # retire() let nothing in after it
                waiting.append(item)
                item = self._queue.get_nowait()
        except queue.Empty:
            return False

    def _finish(self, job: Job, *, served: bool = True) -> None:
        # Counted before the request hears it is done, so a status read after it agrees.
        with self._lock:
            if served:
                self.running -= 1
                self.requests += 1
            else:
                self.queued -= 1
            self.last_used = time.time()
            self.used_at = time.monotonic()
            if self.running == 0 and self.queued == 0:
                self._idle_from(self.last_used)
        if job.admission is not None:
            job.admission.finished()
        job.emit(DONE)

    def _load(self) -> Engine | None:
        started = time.perf_counter()
        try:
            engine = self.engine_class.load(self.spec)
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
                self._queue.put(STOP)
            self._loaded.set()
            return None
        self.load_seconds = time.perf_counter() - started
        self._stats = engine.stats()
        gate_for(self.spec.name).capacity = max(1, self._stats.slots)  # a request that can start never waits
        self.engine = engine
        with self._lock:
            if self.state == "loading":
                self.state = "ready"
            if self.running == 0 and self.queued == 0:  # warmed with no request: its keep_alive starts now
                self._idle_from(time.time())
        logger.info("Loaded %s model in %.2fs", self.spec.name, self.load_seconds)
        self._loaded.set()
        return engine

    # --- idle unload (keep_alive) ------------------------------------------------------------
    def _idle_from(self, now: float) -> None:
        """Called with the lock held when the last request has ended."""
        self.unload_at = None if math.isinf(self.keep_alive) else now + self.keep_alive

    def _idle_timeout(self) -> float | None:
        unload_at = self.unload_at
        return None if unload_at is None else max(0.0, unload_at - time.time())

    def _expire(self) -> bool:
        """Stop taking work if still idle past `unload_at`; True: the model is to be closed now."""
        with self._lock:
            unload_at = self.unload_at
            if unload_at is None or self.queued or self.running or time.time() < unload_at:
                return False
            self._accepting = False
            self.state = "retiring"
            self.unload_at = None
        logger.info("%s: idle for its keep_alive (%gs): unloading", self.spec.name, self.keep_alive)
        return True

    def _refuse_all(self) -> None:
        """The model failed to load: every queued request gets a 503."""
        waiting: deque[Job] = deque()
        while not self._take(waiting, block=True):
            pass
        for job in waiting:
            job.emit(Failed(ModelUnavailable(self.error or "Model failed to load.")))
            self._finish(job, served=False)

    def _close(self, engine: Engine) -> None:
        """Close the model on its owner thread; a retired scheduler then reports "unloaded"."""
        try:
            engine.close()
        except Exception:
            logger.exception("Closing %s failed", self.spec.name)
        logger.info("Unloaded %s model", self.spec.name)
        with self._lock:
            self.state = "unloaded"
