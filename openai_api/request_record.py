"""What is known about the request being served: its id, tier, status, tokens and timings.

The access middleware (access_log.py) creates a `RequestRecord` per HTTP request and keeps it in a
context variable; code deeper in the request adds what only it knows through the `note_*`
functions (no-ops outside a request): API key authentication (access.py) calls `note_api_key`;
ASGI code finds the record in `scope["llmservice.request"]`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from inference.stats import GenerationStats

request_record_var: ContextVar["RequestRecord | None"] = ContextVar("request_record", default=None)


@dataclass(slots=True)
class RequestRecord:
    """What the access line and the metrics say about one request."""

    id: str
    method: str
    path: str
    endpoint: str
    client: str
    started: float  # time.perf_counter()
    tier: str = ""
    status: int = 0
    cache: str | None = None  # the response's X-Cache: HIT or MISS
    api_key_name: str = ""  # set by API key authentication
    error_code: str | None = None
    prompt_tokens: int | None = None  # set directly when there is no generation (embeddings, a cache HIT)
    completion_tokens: int | None = None
    generations: list[GenerationStats] = field(default_factory=list)
    finished: float | None = None  # the last byte was handed to the server
    _error_body: bytearray | None = None

    @property
    def complete(self) -> bool:
        return self.finished is not None

    @property
    def total_seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def first_token_seconds(self) -> float | None:
        firsts = [g.first_token_at for g in self.generations if g.first_token_at is not None]
        return min(firsts) - self.started if firsts else None

    def tokens(self) -> tuple[int | None, int | None]:
        if self.generations:
            return sum(g.prompt_tokens for g in self.generations), sum(g.completion_tokens for g in self.generations)
        return self.prompt_tokens, self.completion_tokens

    def fields(self) -> dict:
        """The access line's fields, in a stable order."""
        prompt, completion = self.tokens()
        ttft = self.first_token_seconds
        return {
            "request_id": self.id,
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "tier": self.tier,
            "status": self.status,
            "error_code": self.error_code,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "ttft_seconds": round(ttft, 4) if ttft is not None else None,
            "total_seconds": round(self.total_seconds, 4),
            "cache": self.cache,
            "api_key": self.api_key_name,
            "client": self.client,
            "complete": self.complete,
        }


def current_request() -> RequestRecord | None:
    """The record of the request being served, or None outside one."""
    return request_record_var.get()


def note_tier(name: str) -> None:
    record = request_record_var.get()
    if record is not None:
        record.tier = name


def note_api_key(name: str) -> None:
    """The name of the API key the request authenticated with (API key authentication calls this)."""
    record = request_record_var.get()
    if record is not None:
        record.api_key_name = name


def note_tokens(*, prompt_tokens: int | None, completion_tokens: int | None = None) -> None:
    record = request_record_var.get()
    if record is not None:
        record.prompt_tokens, record.completion_tokens = prompt_tokens, completion_tokens


def new_generation_stats() -> GenerationStats:
    """Stats for one generation of the current request, read when the request ends."""
    stats = GenerationStats()
    record = request_record_var.get()
    if record is not None:
        record.generations.append(stats)
    return stats
