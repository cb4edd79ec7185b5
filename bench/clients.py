"""Load generation: one chat request over HTTP (httpx, async), or straight into the engine."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

logger = logging.getLogger(__name__)

# Generation sections must never be answered from the response cache (issue 4): it would
# measure the cache, not the model. `no-store` = neither read nor write.
NO_CACHE = {"Cache-Control": "no-store"}


@dataclass
class Outcome:
    """How one request went, seen from the client."""

    seconds: float
    ttft: float | None  # time to the first content token (streams only)
    tokens: int
    completed: bool  # a finish_reason arrived (a cut-off stream ends with [DONE] and none)
    finish_reason: str | None = None
    cache: str | None = None  # the X-Cache header, when the server sends one
    status: int = 200

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.tokens and self.seconds > 0 else None


def _usage_tokens(payload: dict) -> int | None:
    usage = payload.get("usage")
    return usage.get("completion_tokens") if usage else None


async def chat(client: httpx.AsyncClient, url: str, payload: dict, headers: dict | None = None) -> Outcome:
    """POST a chat completion; stream it if `payload["stream"]`. Never raises for HTTP errors."""
    headers = headers if headers is not None else NO_CACHE
    started = time.perf_counter()
    if not payload.get("stream"):
        response = await client.post(url, json=payload, headers=headers)
        seconds = time.perf_counter() - started
        body = response.json()
        ok = response.status_code == 200
        finish = body["choices"][0]["finish_reason"] if ok else None
        return Outcome(seconds, None, (_usage_tokens(body) or 0) if ok else 0, ok and finish is not None, finish,
                       response.headers.get("x-cache"), response.status_code)
    tally = StreamTally(started)
    async with client.stream("POST", url, json=payload, headers=headers) as response:
        cache = response.headers.get("x-cache")
        if response.status_code != 200:
            await response.aread()
            return Outcome(time.perf_counter() - started, None, 0, False, None, cache, response.status_code)
        async for line in response.aiter_lines():
            if tally.line(line):
                break
    return tally.outcome(cache)


class StreamTally:
    """What a client counts of a chat completion stream, fed its lines as they arrive."""

    def __init__(self, started: float):
        self.started = started
        self.ttft: float | None = None
        self.chunks = 0
        self.usage_tokens: int | None = None
        self.finish: str | None = None

    def line(self, line: str | bytes) -> bool:
        """Count one SSE line; True at [DONE]."""
        if isinstance(line, bytes):
            line = line.decode()
        if not line.startswith("data:"):
            return False  # blank separators and the peer's ": ping" comments
        data = line[5:].strip()
        if data == "[DONE]":
            return True
        event = json.loads(data)
        self.usage_tokens = _usage_tokens(event) or self.usage_tokens
        for choice in event.get("choices") or ():
            if choice["delta"].get("content"):
                self.chunks += 1
                if self.ttft is None:
                    self.ttft = time.perf_counter() - self.started
            self.finish = choice.get("finish_reason") or self.finish
        return False

    def outcome(self, cache: str | None) -> Outcome:
        seconds = time.perf_counter() - self.started
        return Outcome(seconds, self.ttft, self.usage_tokens or self.chunks, self.finish is not None, self.finish, cache)


async def chat_clients(url: str, payload: dict, clients: int, headers: dict | None = None) -> tuple[float, list[Outcome]]:
    """`clients` concurrent clients, one request each; returns (wall seconds, outcomes)."""
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(chat(client, url, payload, headers) for _ in range(clients)))
        return time.perf_counter() - started, list(outcomes)


async def chat_clients_repeating(url: str, payload: dict, clients: int, each: int,
                                 headers: dict | None = None) -> tuple[float, list[Outcome]]:
    """`clients` concurrent clients, each sending `each` requests one after another (a new one joins
    as soon as the last ends); returns (wall seconds, outcomes)."""
    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one_client() -> list[Outcome]:
            return [await chat(client, url, payload, headers) for _ in range(each)]

        started = time.perf_counter()
        results = await asyncio.gather(*(one_client() for _ in range(clients)))
        return time.perf_counter() - started, [o for outcomes in results for o in outcomes]


class Engine:
    """llama-cpp-python called directly: the same file, threads and context as the servers, and the
    thread pools our tiers attach to their contexts (inference/llama_threads.py). Our build of
    llama.cpp has no OpenMP; without a pool its context starts a thread per token, which would
    make the engine slower than the service that runs it."""

    def __init__(self, model_path: str, n_threads: int):
        from llama_cpp import Llama

        from inference import llama_threads

        self.llama = Llama(model_path=model_path, n_ctx=2048, n_batch=512, n_threads=n_threads, verbose=False)
        llama_threads.attach_llama(self.llama)

    def chat(self, payload: dict) -> Outcome:
        kwargs: dict[str, Any] = {k: payload[k] for k in ("messages", "max_tokens", "temperature", "seed", "repeat_penalty")}
        started = time.perf_counter()
        if not payload.get("stream"):
            result = self.llama.create_chat_completion(**kwargs)
            seconds = time.perf_counter() - started
            finish = result["choices"][0]["finish_reason"]
            return Outcome(seconds, None, result["usage"]["completion_tokens"], finish is not None, finish)
        ttft, chunks, finish = None, 0, None
        for chunk in self.llama.create_chat_completion(stream=True, **kwargs):
            choice = chunk["choices"][0]
            if choice["delta"].get("content"):
                chunks += 1
                if ttft is None:
                    ttft = time.perf_counter() - started
            finish = choice.get("finish_reason") or finish
        return Outcome(time.perf_counter() - started, ttft, chunks, finish is not None, finish)

    def close(self) -> None:
        from inference import llama_threads

        llama_threads.close_llama(self.llama)
