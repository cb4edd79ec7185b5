"""What chat and completions share: running choices, SSE framing, usage, error events."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from inference.admission import DEADLINE_PASSED, request_deadline
from inference.events import Delta, Event, Finished, Started, TokenLogprob
from inference.manager import get_manager
from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import DeadlineExceeded, ServiceError, WrongModelKind

from ..access import meter_tokens
from ..errors import error_body
from ..request_record import new_generation_stats, note_tier

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


def envelope(ident: str, obj: str, created: int, spec: ModelSpec) -> dict:
    """The fields every response object and chunk starts with, in the spec's order."""
    return {"id": ident, "object": obj, "created": created, "model": spec.name, "system_fingerprint": f"fp_{spec.config_key}"}


def sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def json_response(payload: dict, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(payload), status=status, content_type="application/json")


def sse_response(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


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


def uncacheable(response: HttpResponse) -> bool:
    outcome = getattr(response, "outcome", None)
    return bool(outcome and outcome.timed_out)


@dataclass
class ChoiceOutput:
    """What one choice has produced so far."""

    index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finished: Finished | None = None

    def absorb(self, event: Event) -> None:
        if isinstance(event, Delta):
            self.text.append(event.text)
            if event.logprobs:
                self.logprobs.extend(event.logprobs)
        elif isinstance(event, Finished):
            self.finished = event

    @property
    def finish_reason(self) -> str:
        return public_reason(self.finished.reason) if self.finished else "length"

    @property
    def completion_tokens(self) -> int:
        return self.finished.completion_tokens if self.finished else 0


@dataclass
class Generation:
    """One prompt's generation in progress (all its n choices), opened and past its `Started` event.

    Events carry their choice's index; choices may interleave."""

    events: AsyncIterator[Event]
    started: Started
    n: int

    async def collect(self) -> list[ChoiceOutput]:
        outputs = [ChoiceOutput(i) for i in range(self.n)]
        async with aclosing(self.events):
            async for event in self.events:
                if isinstance(event, (Delta, Finished)):
                    outputs[event.index].absorb(event)
        return outputs


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


def with_relaxed(response: HttpResponse, generation: "Generation") -> HttpResponse:
    """Name, in a header, the schema keywords this answer was not held to (non-strict schemas)."""
    relaxed = generation.started.relaxed
    if relaxed:
        value = ", ".join(relaxed)
        if len(value) > RELAXED_HEADER_MAX:
            kept = value[:RELAXED_HEADER_MAX].rsplit(", ", 1)[0]
            value = f"{kept}, ... ({len(relaxed) - kept.count(', ') - 1} more)"
        response[RELAXED_HEADER] = value
    return response


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(entries: list[TokenLogprob]) -> dict:
    """https://platform.openai.com/docs/api-reference/chat/object#chat/object-choices"""
    return {
        "content": [
            {
                "token": e.token,
                "logprob": e.logprob,
                "bytes": e.bytes,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": b} for t, lp, b in e.top],
            }
            for e in entries
        ],
        "refusal": None,
    }


def completion_logprobs(entries: list[TokenLogprob], offset: int) -> dict:
    """The legacy completions shape: parallel lists, text offsets from `offset`."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{t: lp for t, lp, _ in e.top} for e in entries],
        "text_offset": offsets,
    }
