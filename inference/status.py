"""What a tier's model is doing: one `TierStatus`, rendered by /health, /v1/models, the status page
and `/internal/status` (hence `manage.py status`), the admin and /metrics.

Add a field here (with a default) and `as_dict()` carries it to /internal/status and the status
page; the other renderers pick what they show.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Literal

from .engines.base import EngineStats

TierState = Literal["unloaded", "loading", "ready", "failed", "retiring"]


@dataclass(frozen=True, slots=True)
class RequestStat:
    """How one finished choice (or embedding/rerank request) went; the last few are kept per model."""

    seconds: float
    first_token_seconds: float | None
    completion_tokens: int

    @property
    def tokens_per_second(self) -> float | None:
        decode = self.seconds - (self.first_token_seconds or 0.0)
        return self.completion_tokens / decode if self.completion_tokens > 1 and decode > 0 else None


@dataclass(frozen=True)
class TierStatus:
    """A snapshot of one tier's model (a retired model still finishing its requests is "retiring";
    once closed, "unloaded")."""

    name: str
    backend: str
    kind: str
    state: TierState = "unloaded"
    load_seconds: float | None = None
    running: int = 0  # requests the engine is serving now
    queued: int = 0  # requests waiting for the engine to take them
    requests: int = 0  # requests served since load
    last_used: float | None = None  # time.time() of the last request's end
    error: str | None = None  # why the last load failed (no server paths)
    failures: int = 0  # consecutive failed loads of this configuration
    retry_at: float | None = None  # time.time() of the next load attempt after a failure
    recent: tuple[RequestStat, ...] = ()
    engine: EngineStats | None = None  # from the engine, refreshed by its scheduler while it runs
    keep_alive: float | None = None  # seconds it stays loaded after its last request (None: never)
    unload_at: float | None = None  # time.time() it unloads if no request comes (None: busy, or never)
    upstream: str | None = None  # remote tiers (inference/remote.py): "up", or "down" (circuit breaker open)

    @classmethod
    def unloaded(cls, name: str, backend: str = "", kind: str = "") -> "TierStatus":
        return cls(name=name, backend=backend, kind=kind)

    @property
    def loaded(self) -> bool:
        return self.state == "ready"

    @property
    def in_flight(self) -> int:
        return self.running + self.queued

    @property
    def active_sequences(self) -> int:
        return self.engine.active if self.engine else self.running

    @property
    def slots(self) -> int | None:
        return self.engine.slots if self.engine else None

    @property
    def batches(self) -> int | None:
        return self.engine.batches if self.engine else None

    @property
    def unload_in(self) -> float | None:
        """Seconds until the idle unload (the countdown the admin, status page and commands show)."""
        return None if self.unload_at is None else max(0.0, self.unload_at - time.time())

    @property
    def kv_cache_usage(self) -> float | None:
        """Fraction of the KV cache in use (0..1); None for engines without one."""
        engine = self.engine
        if engine is None or engine.kv_cells_used is None or not engine.kv_cells_total:
            return None
        return engine.kv_cells_used / engine.kv_cells_total

    def as_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values, with the recent requests summed up."""
        recent = list(self.recent)
        rates = [r.tokens_per_second for r in recent if r.tokens_per_second]
        last = recent[-10:]
        engine = self.engine
        return {
            "name": self.name,
            "backend": self.backend,
            "kind": self.kind,
            "state": self.state,
            "loaded": self.loaded,
            "load_seconds": round(self.load_seconds, 3) if self.load_seconds is not None else None,
            "running": self.running,
            "queued": self.queued,
            "in_flight": self.in_flight,
            "active_sequences": self.active_sequences,
            "slots": self.slots,
            "kv_cells_used": engine.kv_cells_used if engine else None,
            "kv_cells_total": engine.kv_cells_total if engine else None,
            "kv_cache_usage": round(self.kv_cache_usage, 4) if self.kv_cache_usage is not None else None,
            "batches": self.batches,  # embedding/rerank: grouped forward passes run
            "engine_counters": dict(engine.counters) if engine else {},
            "requests": self.requests,
            "last_used": self.last_used,
            "error": self.error,
            "failures": self.failures,
            "next_retry_at": self.retry_at if self.state == "failed" else None,
            "recent_seconds": round(sum(r.seconds for r in last) / len(last), 3) if last else None,
            "tokens_per_second": round(sum(rates[-10:]) / len(rates[-10:]), 1) if rates else None,
            "history": [round(rate, 1) for rate in rates][-30:],
            "unload_in_seconds": round(self.unload_in, 1) if self.unload_at is not None else None,
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _RENDERED},
        }


# Fields `as_dict` renders itself; any field added later is carried as it is.
_RENDERED = frozenset(
    {"name", "backend", "kind", "state", "load_seconds", "running", "queued", "requests", "last_used", "error",
     "failures", "retry_at", "recent", "engine"}
)
