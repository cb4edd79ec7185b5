"""The engine contract: what every loaded model implements, whatever serves it.

An engine accepts jobs, reports events per job, and can abort one. It never owns a thread: the
model's scheduler (inference/scheduler.py) calls every method below on the model's one owner
thread, in a loop: admit queued jobs while `free_slots()` allows, abort the cancelled ones,
`step()` while any is active, and block on the queue when idle.

Events (inference/events.py): one `Started` per job once its prompt is accepted; `Delta(text,
logprobs, index)` and `Finished(reason, prompt_tokens, completion_tokens, index)` per choice;
`Result(value)` for a job answered in one piece (embeddings, rerank); `Failed(error)` for an
error, which ends the job. A job is done when every choice has finished (or it failed, or it got
its Result), and `step()` returns it exactly once then, including a job that `admit()` failed
at once. `abort(job)` ends a job there and then (its unfinished choices emit
`Finished("cancelled")`); the scheduler finishes it, and `step()` never returns it.

Two adapters serve today's backends under this contract: `SerialEngine` (one request at a time,
inference/engines/serial.py) and `ForwardPassEngine` (embedding and rerank requests grouped into
one forward pass, inference/engines/forward_pass.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Protocol

from pydantic import BaseModel

from ..params import ModelSpec


class Job(Protocol):
    """What an engine may use of a job (inference/jobs.py has the real one)."""

    request: Any  # GenerationRequest (with its compiled constraint in `compiled`), EmbeddingRequest or RerankRequest
    cancelled: threading.Event  # set when the client left, the deadline passed or the server stops

    def emit(self, event: object) -> None:
        """Hand an event to the waiting request (cheap: wake-ups are grouped)."""
        ...


@dataclass(frozen=True)
class EngineStats:
    """What an engine is doing now; read by the scheduler on its owner thread for `TierStatus`."""

    active: int  # sequences (or requests) being served now
    slots: int  # the most it serves at once (its parallelism)
    kv_cells_used: int | None = None  # KV cache cells holding active sequences; None: no KV cache
    kv_cells_total: int | None = None
    batches: int | None = None  # grouped forward passes run since load (embedding and rerank engines)
    counters: Mapping[str, int] = field(default_factory=dict)  # engine-specific (steps, prompt tokens reused, ...)


class Engine(Protocol):
    """A loaded model serving many requests at once. Every method runs on the model's owner thread."""

    kinds: ClassVar[frozenset[str]]  # the tier kinds it serves: {"chat"}, {"embedding"}, {"rerank"}
    options: ClassVar[type[BaseModel]]  # its load options, stored as JSON on the tier (inference/options.py)
    # A chat engine that enforces constraints also has `constraint_compiler` (inference/constraints):
    # the manager's prepare step compiles a request's constraint with it, off the owner thread, and
    # the compiled form reaches the engine on the job (`job.request.compiled`). Without one, a
    # constrained request is refused with a 400 naming its parameter.
    # An engine whose step serves whatever is admitted in one pass (ForwardPassEngine) may also have
    # `gather_seconds() -> float`: how long the scheduler waits for more jobs before stepping.

    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        """Problems that would stop `spec` from loading (missing file, ...); [] if none."""
        ...

    @classmethod
    def load(cls, spec: ModelSpec) -> "Engine":
        """Load the model; raise `ModelUnavailable` with a clear message if it can't be."""
        ...

    def free_slots(self) -> int:
        """How many more jobs `admit()` takes right now (0: full; they wait in the queue)."""
        ...

    def admit(self, job: Job) -> None:
        """Start serving `job` (it may fail at once: emit `Failed`, and return it from the next step)."""
        ...

    def step(self) -> list[Job]:
        """One unit of work for every admitted job; the jobs now done."""
        ...

    def abort(self, job: Job) -> None:
        """Stop `job` now (cancelled, deadline, shutdown) and free its slot and KV cells at once."""
        ...

    def active(self) -> int:
        """Jobs admitted and not yet returned by `step()` or aborted."""
        ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None:
        """Free the model now, not at garbage collection."""
        ...


class NoOptions(BaseModel):
    """An engine that takes no load options."""
