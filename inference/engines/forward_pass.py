"""Dynamic batching of embedding and rerank requests under the engine contract.

`ForwardPassEngine` serves a `BatchBackend` (inference/retrieval.py: `prepare(request)` validates
and tokenizes one request, `run(batch)` computes a group of them): `admit()` prepares each job and
collects it, `step()` runs each group of compatible jobs (same output options) through the model in
one forward pass. While a pass runs, new requests queue; the next step takes all of them together.
Each request still gets its own result, or its own error, as a `Result` or `Failed` event.

Gathering: clients that got their answers from one pass send their next requests one after
another (each parsed on the event loop), so the first to arrive would start a pass alone and the
rest would wait a whole pass for the next one. A step therefore waits (`gather_seconds`, at most
the tier's `gather_ms`) until as many requests are admitted as the previous pass served plus
those that arrived while it ran. One client at a time never waits; when clients go away, one pass
waits the full window and the expectation falls to what came.
Subclass it as `SerialEngine` is (inference/engines/serial.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, ClassVar

from pydantic import BaseModel

from llmservice.errors import InternalError, ServiceError

from ..events import Failed, Result
from ..params import ModelSpec
from ..retrieval import Prepared
from .base import EngineStats, Job, NoOptions

logger = logging.getLogger(__name__)

MAX_JOBS_PER_BATCH = 64  # requests one step takes; the bench sets 1 to measure one-by-one
COMPUTE_FAILED = "The model failed while computing; see the server log."


class ForwardPassEngine:
    """Embedding or rerank requests, grouped into as few forward passes as their options allow."""

    backend: ClassVar[Any]  # the BatchBackend class this engine serves
    kinds: ClassVar[frozenset[str]] = frozenset({"embedding"})
    options: ClassVar[type[BaseModel]] = NoOptions
    clock: ClassVar[Callable[[], float]] = staticmethod(time.perf_counter)  # the jobs' `queued_at` clock

    def __init__(self, model: Any):
        self.model = model  # the loaded backend
        self.batches = 0  # forward passes run: one per group of compatible requests
        self._admitted: list[tuple[Job, Prepared]] = []
        self._failed: list[Job] = []  # refused by prepare(): returned by the next step
        self._expected = 1  # requests the next pass should serve: what the last one served + late joiners
        self._pass_ended = 0.0  # clock() when the last pass ended
        self._gathering_since: float | None = None  # when the next pass began waiting (None: not yet)

    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        return cls.backend.check(spec)

    @classmethod
    def load(cls, spec: ModelSpec) -> "ForwardPassEngine":
        return cls(cls.backend.load(spec))

    # --- the contract -------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, MAX_JOBS_PER_BATCH - len(self._admitted) - len(self._failed))

    def active(self) -> int:
        return len(self._admitted) + len(self._failed)

    def admit(self, job: Job) -> None:
        """Validate and tokenize the request now; a bad one fails alone."""
        try:
            prepared = self.model.prepare(job.request)
        except Exception as exc:
            job.emit(Failed(self._client_error(exc)))
            self._failed.append(job)
            return
        self._admitted.append((job, prepared))

    def gather_seconds(self) -> float:
        """How much longer the scheduler should wait for requests before the next `step()` (0: step now)."""
        window = getattr(self.model, "gather_seconds", 0.0)
        pending = len(self._admitted)
        if not pending or window <= 0 or self._failed:
            return 0.0
        now = self.clock()
        if self._gathering_since is None:  # requests queued while the last pass ran join the expectation
            self._gathering_since = now
            self._expected += sum(1 for job, _ in self._admitted if job.queued_at <= self._pass_ended)
        expected = min(self._expected, MAX_JOBS_PER_BATCH)
        if pending >= expected:
            return 0.0
        return max(0.0, self._gathering_since + window - now)

    def step(self) -> list[Job]:
        """One forward pass per group of compatible admitted requests; every one of them is done."""
        self._expected = len(self._admitted)  # the next pass expects as many, plus late joiners
        self._gathering_since = None
        done, self._failed = self._failed, []
        groups: dict[Any, list[tuple[Job, Prepared]]] = {}
        for job, prepared in self._admitted:
            groups.setdefault(prepared.group, []).append((job, prepared))
        self._admitted = []
        for items in groups.values():
            self.batches += 1
            try:
                outcomes = self.model.run([prepared for _, prepared in items])
            except Exception as exc:
                outcomes = [self._client_error(exc)] * len(items)
            for (job, _), outcome in zip(items, outcomes):
                job.emit(Failed(outcome) if isinstance(outcome, BaseException) else Result(outcome))
                done.append(job)
        self._pass_ended = self.clock()
        if len(done) > 1:
            logger.debug("%d requests in %d forward pass(es)", len(done), len(groups))
        return done

    def abort(self, job: Job) -> None:
        """A request that gave up before its pass runs leaves the batch (a running pass finishes)."""
        self._admitted = [item for item in self._admitted if item[0] is not job]
        self._failed = [j for j in self._failed if j is not job]

    def stats(self) -> EngineStats:
        return EngineStats(active=len(self._admitted), slots=MAX_JOBS_PER_BATCH, batches=self.batches)

    def close(self) -> None:
        self.model.close()

    @staticmethod
    def _client_error(exc: Exception) -> ServiceError:
        if isinstance(exc, ServiceError):
            return exc
        logger.error("A forward pass failed", exc_info=exc)
        return InternalError(COMPUTE_FAILED)
