"""The engine contract over a backend that generates one request at a time.

`SerialEngine` serves a `GenerationBackend` (inference/backends/base.py: `generate(request,
should_stop)` yields Started, Deltas, Finished): one job at a time, its `n` choices one after
another, each `step()` advancing the job's generator by one token. Subclass it, naming the backend,
the kinds and the options:

    class LlamaCppEngine(SerialEngine):
        backend = LlamaCppBackend
        kinds = frozenset({"chat"})
        options = LlamaCppOptions
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar, Iterator

from pydantic import BaseModel

from llmservice.errors import InternalError, ServiceError

from ..events import Delta, Event, Failed, Finished, Started
from ..params import ModelSpec
from .base import EngineStats, Job, NoOptions

logger = logging.getLogger(__name__)

GENERATION_FAILED = "The model failed while generating; see the server log."
ABORT_EVENTS = 8  # events an aborted generator may still yield before it is closed regardless


class SerialEngine:
    """One request at a time from a generator backend; its choices one after another."""

    backend: ClassVar[Any]  # the GenerationBackend class this engine serves
    kinds: ClassVar[frozenset[str]] = frozenset({"chat"})
    options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, model: Any):
        self.model = model  # the loaded backend
        self._job: Job | None = None
        self._index = 0  # the choice being generated
        self._events: Iterator[Event] | None = None
        self._began = False  # the current choice's generator has run (its prompt is being evaluated)
        self._prompt_tokens = 0

    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        return cls.backend.check(spec)

    @property
    def constraint_compiler(self) -> Any:
        """The backend's constraint compiler (inference/constraints), or None if it enforces none."""
        return getattr(self.model, "constraint_compiler", None)

    @classmethod
    def load(cls, spec: ModelSpec) -> "SerialEngine":
        return cls(cls.backend.load(spec))

    # --- the contract -------------------------------------------------------------------------
    def free_slots(self) -> int:
        return 0 if self._job is not None else 1

    def active(self) -> int:
        return 0 if self._job is None else 1

    def admit(self, job: Job) -> None:
        self._job = job
        self._index = 0
        self._open()

    def step(self) -> list[Job]:
        """Advance the current choice by one token (one Delta, or its Finished)."""
        job = self._job
        if job is None or self._events is None:
            return []
        self._began = True
        try:
            for event in self._events:
                if type(event) is Started:
                    self._prompt_tokens = event.prompt_tokens
                    if self._index:
                        continue  # one Started per request
                elif self._index:
                    event = dataclasses.replace(event, index=self._index)
                job.emit(event)
                if type(event) is Finished:
                    return self._next_choice()
                if type(event) is Delta:
                    return []
            return self._next_choice()  # a generator that ended without Finished
        except ServiceError as exc:
            return self._fail(exc)
        except Exception:
            logger.exception("Generation failed")
            return self._fail(InternalError(GENERATION_FAILED))

    def abort(self, job: Job) -> None:
        """End the job now: the current choice says how far it got, the rest end at 0 tokens."""
        if job is not self._job:
            return
        finished = False
        if self._events is not None and self._began:
            try:  # the backend sees should_stop() and ends the choice within a token, with its count
                for count, event in enumerate(self._events):
                    if type(event) is not Started:
                        job.emit(dataclasses.replace(event, index=self._index) if self._index else event)
                    if type(event) is Finished:
                        finished = True
                        break
                    if count >= ABORT_EVENTS:
                        break
            except Exception:
                logger.debug("An aborted generation raised", exc_info=True)
        start = self._index + 1 if finished else self._index
        for index in range(start, job.request.n):
            job.emit(Finished("cancelled", self._prompt_tokens, 0, index))
        self._clear()

    def stats(self) -> EngineStats:
        return EngineStats(active=self.active(), slots=1)

    def close(self) -> None:
        self._clear()
        self.model.close()

    # --- inside ---------------------------------------------------------------------------------
    def _open(self) -> None:
        job = self._job
        self._began = False
        self._events = iter(self.model.generate(job.request.choice(self._index), job.cancelled.is_set))

    def _next_choice(self) -> list[Job]:
        job = self._job
        self._index += 1
        if self._index < job.request.n and not job.cancelled.is_set():
            self._close_events()
            self._open()
            return []
        if self._index < job.request.n:  # cancelled between two choices: the scheduler aborts it
            self._close_events()
            self._events = None
            return []
        self._clear()
        return [job]

    def _fail(self, error: ServiceError) -> list[Job]:
        job = self._job
        job.emit(Failed(error))
        self._clear()
        return [job]

    def _close_events(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def _clear(self) -> None:
        if self._events is not None:
            self._close_events()
        self._job = None
        self._events = None
        self._prompt_tokens = 0
