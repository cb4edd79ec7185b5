"""The `remote` backend: a tier served by another OpenAI-compatible server (vLLM, SGLang,
llama-server, TGI, another llmservice).

Nothing is loaded here: requests to a remote tier are relayed by the serving layer
(openai_api/remote/), which keeps our front (keys, limits, cache, metrics, request ids) in front
of the upstream. This module holds what the rest of the service needs to know about such a tier:
its options (validated in the admin like any backend's), and the upstream's health as a circuit
breaker whose state `TierStatus` shows in /health, /v1/models and the admin.

Circuit breaker: `breaker_failures` consecutive failures (5xx, broken connection, timeout) open
it; while open, requests fail at once with a 502; after `breaker_reset_seconds` one request is let
through (half-open), and its success closes it again.
https://martinfowler.com/bliki/CircuitBreaker.html
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from llmservice.errors import ModelUnavailable

from .engines.base import EngineStats
from .options import EngineOptions, option
from .params import ModelSpec
from .status import TierStatus

REMOTE_BACKEND = "remote"
NOT_LOADABLE = "Tier '{tier}' is a remote tier: it is served by its upstream, never loaded here."
BAD_URL = "option base_url: '{url}' is not an http(s) URL such as http://gpu-box:8000/v1"
MISSING_KEY_ENV = "option api_key_env: the environment variable {name} is not set"


class RemoteOptions(EngineOptions):
    """A remote tier's options. The API key is never stored: only the NAME of the environment
    variable holding it."""

    base_url: str | None = option(None, description="The upstream's OpenAI base URL, e.g. http://vllm:8000/v1.")
    api_key_env: str | None = option(None, description="Name of the environment variable holding the upstream's API key (never the key).")
    model: str | None = option(None, description="The upstream's model name (empty: the tier's model_path).")
    trust_json_schema: bool = option(True, description="The upstream enforces json_schema; off: answers are validated here (invalid: an error).")
    connect_timeout: float = option(5.0, gt=0, description="Seconds to connect to the upstream.")
    read_timeout: float = option(120.0, gt=0, description="Seconds to wait for the upstream's first byte and between bytes (then 504).")
    retries: int = option(2, ge=0, le=10, description="Retries before the first byte (connection errors, 5xx, timeouts).")
    retry_backoff: float = option(0.25, ge=0, description="Seconds before the first retry (doubles each time).")
    max_connections: int = option(100, ge=1, description="Connections in this tier's pool.")
    breaker_failures: int = option(5, ge=1, description="Consecutive upstream failures that mark it down.")
    breaker_reset_seconds: float = option(30.0, gt=0, description="Seconds an upstream stays marked down before one request tries it again.")


def remote_problems(values: RemoteOptions | dict) -> list[str]:
    """What stops a remote tier from serving: no or a bad base_url, an unset key variable."""
    options = values if isinstance(values, RemoteOptions) else RemoteOptions.model_validate(values)
    problems = []
    parts = urlsplit(options.base_url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(BAD_URL.format(url=options.base_url or ""))
    if options.api_key_env and options.api_key_env not in os.environ:
        problems.append(MISSING_KEY_ENV.format(name=options.api_key_env))
    return problems


class RemoteEngine:
    """The backend registry's entry for `remote` tiers: their kinds, options and check. Never
    loaded: the serving layer relays their requests (openai_api/remote/)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"chat", "embedding", "rerank"})
    options: ClassVar[type[BaseModel]] = RemoteOptions

    @classmethod
    def check(cls, spec: ModelSpec) -> list[str]:
        try:
            return remote_problems(dict(spec.load))
        except ValueError:  # invalid option values: options_problems already names them
            return []

    @classmethod
    def load(cls, spec: ModelSpec) -> "RemoteEngine":
        raise ModelUnavailable(NOT_LOADABLE.format(tier=spec.name))

    # The rest of the contract: never called (load always refuses).
    def free_slots(self) -> int:  # pragma: no cover
        return 0

    def admit(self, job) -> None:  # pragma: no cover
        raise ModelUnavailable(NOT_LOADABLE.format(tier="?"))

    def step(self) -> list:  # pragma: no cover
        return []

    def abort(self, job) -> None:  # pragma: no cover
        pass

    def active(self) -> int:  # pragma: no cover
        return 0

    def stats(self) -> EngineStats:  # pragma: no cover
        return EngineStats(active=0, slots=0)

    def close(self) -> None:  # pragma: no cover
        pass


# --- the upstream's health: one circuit breaker per tier --------------------------------------
@dataclass
class Breaker:
    """Consecutive failures of one tier's upstream, and whether it is marked down."""

    failures: int = 0
    opened_at: float | None = None  # time.time() it was marked down
    error: str | None = None  # the last failure, as the client saw it
    trial: bool = False  # half-open: one request is trying the upstream
    requests: int = 0
    running: int = 0
    last_used: float | None = None


class UpstreamHealth:
    """Every remote tier's breaker (per process: each instance judges its upstream itself)."""

    def __init__(self) -> None:
        self._breakers: dict[str, Breaker] = {}
        self._lock = threading.Lock()

    def _get(self, tier: str) -> Breaker:
        return self._breakers.setdefault(tier, Breaker())

    def admit(self, tier: str, *, reset_seconds: float) -> str | None:
        """None if a request may go upstream now; else why not (the upstream is marked down)."""
        with self._lock:
            breaker = self._get(tier)
            if breaker.opened_at is None:
                return None
            if time.time() - breaker.opened_at >= reset_seconds and not breaker.trial:
                breaker.trial = True  # half-open: this request tries it
                return None
            return breaker.error or "upstream marked down"

    def started(self, tier: str) -> None:
        with self._lock:
            breaker = self._get(tier)
            breaker.running += 1
            breaker.requests += 1

    def finished(self, tier: str) -> None:
        with self._lock:
            breaker = self._get(tier)
            breaker.running = max(0, breaker.running - 1)
            breaker.last_used = time.time()

    def succeeded(self, tier: str) -> None:
        with self._lock:
            breaker = self._get(tier)
            breaker.failures, breaker.opened_at, breaker.error, breaker.trial = 0, None, None, False

    def failed(self, tier: str, error: str, *, threshold: int) -> None:
        with self._lock:
            breaker = self._get(tier)
            breaker.failures += 1
            breaker.error = error
            if breaker.trial or breaker.failures >= threshold:
                breaker.opened_at, breaker.trial = time.time(), False

    def forget(self, tier: str) -> None:
        """A tier edited (new upstream): judge it afresh."""
        with self._lock:
            self._breakers.pop(tier, None)

    def statuses(self, reset_seconds: dict[str, float] | None = None) -> dict[str, TierStatus]:
        """A `TierStatus` per remote tier used so far: "ready" (up) or "failed" (marked down)."""
        with self._lock:
            items = list(self._breakers.items())
        out = {}
        for name, b in items:
            down = b.opened_at is not None
            reset = (reset_seconds or {}).get(name, RemoteOptions.model_fields["breaker_reset_seconds"].default)
            out[name] = TierStatus(
                name=name, backend=REMOTE_BACKEND, kind="", state="failed" if down else "ready",
                running=b.running, requests=b.requests, last_used=b.last_used, error=b.error if down else None,
                failures=b.failures, retry_at=(b.opened_at + reset) if down else None,
                upstream="down" if down else "up",
            )
        return out


upstream_health = UpstreamHealth()
