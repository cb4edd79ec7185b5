"""What chat and completions share: opening generations, SSE framing, usage, error events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Iterable, Protocol

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from pydantic import BaseModel
from pydantic_core import to_json as to_json_value

from inference.admission import DEADLINE_PASSED, request_deadline
from inference.events import Event, Finished, Started
from inference.manager import get_manager
from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import DeadlineExceeded, ServiceError, WrongModelKind

from ..access import meter_tokens
from ..errors import error_body
from ..request_record import new_generation_stats, note_tier
from ..schemas.objects import Usage, to_json

if TYPE_CHECKING:
    from .choices import Output
    from .results import GenerationResult

SSE_DONE = b"data: [DONE]\n\n"
RELAXED_HEADER = "X-Schema-Relaxed"  # what a non-strict schema was not held to (the cache replays it)
RELAXED_HEADER_MAX = 2000  # characters; a longer list is cut, saying how many more there were
WRONG_KIND = "The model '{model}' is a {kind} model; it does not serve {endpoint}."


def require_kind(spec: ModelSpec, kind: str, endpoint: str) -> None:
    """Refuse a tier of the wrong kind; every model endpoint calls this once the tier is known,
    so this is also where the access log learns the tier."""
    note_tier(spec.name)
    if spec.kind != kind:
        raise WrongModelKind(WRONG_KIND.format(model=spec.name, kind=spec.kind, endpoint=endpoint), param="model")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_bytes(obj: BaseModel) -> bytes:
    return b"data: " + to_json(obj) + b"\n\n"


class TextEvents:
    """A stream's text-delta events as bytes, serialised once around the text.

    Per token, building the chunk's models and serialising them cost more than everything else
    our code does (about 13 us of 14). `sample(index, text)` is the renderer's own chunk with
    `text`; its bytes, cut at the text, are the template, so an event is byte-for-byte what
    the model gives."""

    MARK = "@@text@@"  # never in an id, model name or fingerprint

    def __init__(self, sample: Callable[[int, str], BaseModel]):
        self._sample = sample
        self._parts: dict[int, tuple[bytes, bytes]] = {}  # choice index -> (before, after)

    def event(self, index: int, text: str) -> bytes:
        parts = self._parts.get(index)
        if parts is None:
            before, mark, after = sse_bytes(self._sample(index, self.MARK)).partition(to_json_value(self.MARK))
            if not mark or self.MARK.encode() in after:  # pragma: no cover - a renderer bug
                raise RuntimeError("the sample chunk does not hold the text once")
            parts = self._parts[index] = (before, after)
        return parts[0] + to_json_value(text) + parts[1]


def json_response(obj: BaseModel | dict, status: int = 200) -> HttpResponse:
    body = to_json(obj) if isinstance(obj, BaseModel) else json.dumps(obj)
    return HttpResponse(body, status=status, content_type="application/json")


def sse_response(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def on_response_close(response: HttpResponse, callback: Callable[[], None]) -> None:
    """Call `callback` on the event loop once the server has closed `response`. The handler
    always closes it (from the loop or a worker thread), also when the client left before a
    streamed body was iterated, so what a stream holds is freed even then. (A resource closer:
    Django's `close()` and the lean path's `close_quietly()` both run those.)"""
    loop = asyncio.get_running_loop()

    def call_on_loop() -> None:
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    response._resource_closers.append(call_on_loop)


def sse_error(exc: ServiceError) -> bytes:
    """An error after the stream has started: the status is already sent, so it goes in-band."""
    return sse(error_body(exc))


def deadline() -> float | None:
    """This request's deadline (REQUEST_TIMEOUT_SECONDS from now), shared by all its generations."""
    return request_deadline(settings.REQUEST_TIMEOUT_SECONDS)


def public_reason(reason: str) -> str:
    """A choice stopped at the request's deadline ends as OpenAI's "length" (it was cut short)."""
    return "length" if reason == "timeout" else reason


def deadline_error() -> DeadlineExceeded:
    return DeadlineExceeded(DEADLINE_PASSED)


@dataclass
class Outcome:
    """What the cache must know about a response once it is complete: an answer cut short by
    its deadline is never stored."""

    timed_out: bool = False


@dataclass
class Generation:
    """One prompt's generation in progress (all its n choices), opened and past its `Started` event.

    Events carry their choice's index; choices may interleave."""

    events: AsyncIterator[Event]
    started: Started
    n: int


async def open_generation(
    spec: ModelSpec,
    request: GenerationRequest,
    *,
    stream: bool = True,
    deadline: float | None = None,
    outcome: Outcome | None = None,
) -> Generation:
    """Queue a generation and wait until the prompt is accepted, so errors come before any byte."""
    generation = get_manager().generate(spec, request, stream=stream, deadline=deadline, stats=new_generation_stats())
    events = _observed(generation, outcome or Outcome())
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()
        raise
    if not isinstance(first, Started):  # pragma: no cover - a backend bug
        await events.aclose()
        raise RuntimeError(f"backend sent {first!r} before Started")
    return Generation(events=events, started=first, n=request.n)


async def _observed(events: AsyncIterator[Event], outcome: Outcome) -> AsyncIterator[Event]:
    """The events as they pass: tokens counted for the API key's usage, a deadline noted."""
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Started):
                await meter_tokens(prompt=event.prompt_tokens)
            elif isinstance(event, Finished):
                await meter_tokens(completion=event.completion_tokens)
                if event.reason == "timeout":
                    outcome.timed_out = True
            yield event


def with_relaxed(response: HttpResponse, relaxed: tuple[str, ...]) -> HttpResponse:
    """Name, in a header, the schema keywords this answer was not held to (non-strict schemas)."""
    if relaxed:
        value = ", ".join(relaxed)
        if len(value) > RELAXED_HEADER_MAX:
            kept = value[:RELAXED_HEADER_MAX].rsplit(", ", 1)[0]
            value = f"{kept}, ... ({len(relaxed) - kept.count(', ') - 1} more)"
        response[RELAXED_HEADER] = value
    return response


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)


Keep = Callable[["GenerationResult"], Awaitable[None]]  # stores a complete result (the cache)


class Renderer(Protocol):
    """One endpoint's shape of a run's outputs: chunks as they come, the closing chunks, the
    whole object. Live streaming, non-streaming and cache replay all go through it."""

    def chunk(self, out: "Output") -> BaseModel | bytes | None: ...  # bytes: an SSE event (TextEvents)

    def closing(self, result: "GenerationResult") -> list[BaseModel]: ...

    def whole(self, result: "GenerationResult") -> BaseModel: ...


async def sse_stream(
    renderer: Renderer, outputs: AsyncIterator["Output"], result: "GenerationResult", keep: Keep | None
) -> AsyncIterator[bytes]:
    """A run's outputs as SSE; an error after the first byte goes in-band. A complete answer
    that was not cut short by its deadline is handed to `keep` once the client has it all."""
    try:
        async with aclosing(outputs):  # closing the stream (the client left) closes the run at once
            async for out in outputs:
                chunk = renderer.chunk(out)
                if chunk is not None:
                    yield chunk if isinstance(chunk, bytes) else sse_bytes(chunk)
        for chunk in renderer.closing(result):
            yield sse_bytes(chunk)
    except ServiceError as exc:
        yield sse_error(exc)
        yield SSE_DONE
        return
    yield SSE_DONE
    if keep is not None and not result.timed_out:
        await keep(result)


async def replayed(outputs: Iterable["Output"]) -> AsyncIterator["Output"]:
    for out in outputs:
        yield out


@dataclass(frozen=True)
class ServedEndpoint:
    """What the cache needs of an endpoint: run it live (handing complete results to `keep`),
    or answer from a stored result through the same renderer."""

    name: str
    run: Callable[..., Awaitable[HttpResponse]]  # (body, *, spec, keep) -> response
    replay: Callable[..., Awaitable[HttpResponse]]  # (body, *, spec, result) -> response
