"""The Responses API: create (whole or streamed), retrieve and delete stored responses.

A request's conversation is resolved first (`previous_response_id` -> the stored turns it
continues), then keyed for the cache, then generated. The answer is kept as a neutral
`ResponseResult` (the cache) and, with `store` (default true), as the response object sent
(`registry.StoredResponse`, for RESPONSES_RETENTION_DAYS; with API keys on, only the key that
made it can see it).

https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

import time
import uuid
from contextlib import aclosing
from typing import AsyncIterator, Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from inference.constraints import ArgumentsPiece, CallStart, TextPiece, ToolCalls, tool_format
from inference.events import Delta, Finished
from llmservice.errors import ResponseNotFound, ServiceError
from registry.selectors import stored_response_get
from registry.services import stored_response_create, stored_response_delete

from ..access import Meter, authorized_tier
from ..cache import HIT, MISS, cache_decision, cache_lookup, cache_store, request_key, response_cache
from ..request_record import note_tokens
from ..schemas.responses import ITEMS, InputItem, ResponseCreateRequest, items_json
from .common import (
    Generation,
    Outcome,
    deadline,
    deadline_error,
    json_response,
    open_generation,
    public_reason,
    require_kind,
    sse_response,
    with_relaxed,
)
from .responses_render import Echo, ResponseResult, ResponseWriter, event_bytes

NOT_FOUND = "Response with id '{id}' not found."
PREVIOUS_NOT_FOUND = "Previous response with id '{id}' not found."
ENDPOINT = "responses"
# Fields that never change an answer: framing, labels, what is echoed, and what the resolved
# conversation (the key's "messages") already holds.
UNKEYED = (
    "input", "instructions", "previous_response_id", "store", "stream", "stream_options", "user", "metadata",
    "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "service_tier",
)

Keep = Callable[..., Awaitable[None]]  # (result, response object, *, cache=True): store it, cache it


def owner_of(request: HttpRequest) -> int | None:
    """The caller's API key id (a key sees only its own stored responses); None with keys off."""
    meter = getattr(request, "auth", None)
    return meter.key.id if isinstance(meter, Meter) else None


async def history_of(previous_id: str | None, owner: int | None) -> list[InputItem]:
    """The whole conversation a stored response continues: its input, then its output."""
    if previous_id is None:
        return []
    row = await sync_to_async(stored_response_get)(response_id=previous_id, owner=owner)
    if row is None:
        raise ResponseNotFound(PREVIOUS_NOT_FOUND.format(id=previous_id), param="previous_response_id")
    return ITEMS.validate_python(row.input_items + row.response["output"])


async def response_create(request: HttpRequest, body: ResponseCreateRequest) -> HttpResponse:
    tier, spec = await authorized_tier(request, model=body.model)
    require_kind(spec, "chat", "responses")
    owner = owner_of(request)
    history = await history_of(body.previous_response_id, owner)
    generation_request = body.to_generation(spec, history)
    conversation = items_json(history) + items_json(body.input_items())
    writer = ResponseWriter(f"resp_{uuid.uuid4().hex}", int(time.time()), Echo(spec.name, body, generation_request.sampling))

    decision = cache_decision(body=body, tier=tier, defaults=dict(spec.defaults),
                              cache_control=request.headers.get("Cache-Control", ""))
    keyed = {k: v for k, v in body.model_dump(mode="json", by_alias=True, exclude_none=True).items() if k not in UNKEYED}
    keyed.update(model=tier.name, messages=[m.as_template_dict() for m in generation_request.messages])
    key = request_key(endpoint=ENDPOINT, config_key=spec.config_key, request=keyed)
    outcome = Outcome()

    async def keep(result: ResponseResult, final: dict, *, cache: bool = True) -> None:
        """Store the answer (store: true) before its last event goes out, so a client may
        continue from it at once; and cache it."""
        if body.stored:
            await sync_to_async(stored_response_create)(
                response_id=final["id"], tier=tier.name, owner=owner, status=final["status"], input_items=conversation,
                response=final, retention_days=settings.RESPONSES_RETENTION_DAYS,
            )
        if cache and decision.write and not outcome.timed_out:
            await cache_store(key=key, tier=tier.name, endpoint=ENDPOINT, config_key=spec.config_key,
                              request=keyed, response=result.to_json())

    if decision.read:
        entry = await cache_lookup(key)
        response_cache.count(tier.name, HIT if entry else MISS)
        if entry is not None:
            result = ResponseResult.from_json(entry.response)
            note_tokens(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens)
            return _marked(await _answer_replayed(writer, result, bool(body.stream), keep), HIT, result.relaxed)

    generation = await open_generation(spec, generation_request, stream=bool(body.stream), deadline=deadline(), outcome=outcome)
    calls = generation_request.constraint if isinstance(generation_request.constraint, ToolCalls) else None
    relaxed = list(generation.started.relaxed)
    if body.stream:
        return _marked(sse_response(_live_events(generation, writer, calls, relaxed, keep)), MISS, relaxed)
    text, finished = await _collected(generation)
    if outcome.timed_out and not text:
        raise deadline_error()
    result = ResponseResult(text=text, finish_reason=public_reason(finished.reason) if finished else "length",
                            prompt_tokens=generation.started.prompt_tokens,
                            completion_tokens=finished.completion_tokens if finished else 0, relaxed=relaxed)
    if calls is not None:
        answer = tool_format(generation.started.tool_format).parse(text, calls.choice)
        if answer.calls or answer.content is None:
            result.text, result.calls = None, list(answer.calls)
    final = writer.whole(result)
    await keep(result, final)
    return _marked(json_response(final), MISS, relaxed)


async def _collected(generation: Generation) -> tuple[str, Finished | None]:
    """The one choice's whole text and how it finished (a response has one choice)."""
    parts: list[str] = []
    finished: Finished | None = None
    async with aclosing(generation.events):
        async for event in generation.events:
            if isinstance(event, Delta):
                parts.append(event.text)
            elif isinstance(event, Finished):
                finished = event
    return "".join(parts), finished


def _marked(response: HttpResponse, outcome: str, relaxed: list[str]) -> HttpResponse:
    response["X-Cache"] = outcome
    return with_relaxed(response, relaxed)


async def _answer_replayed(writer: ResponseWriter, result: ResponseResult, stream: bool, keep: Keep) -> HttpResponse:
    """A cached answer, rendered as a live one is (new ids), and stored like one."""
    events = list(writer.replay(result))
    await keep(result, writer.final, cache=False)
    if not stream:
        return json_response(writer.final)

    async def chunks() -> AsyncIterator[bytes]:
        for event in events:
            yield event_bytes(event)

    return sse_response(chunks())


async def _live_events(
    generation: Generation, writer: ResponseWriter, calls: ToolCalls | None, relaxed: list[str], keep: Keep
) -> AsyncIterator[bytes]:
    parser = tool_format(generation.started.tool_format).parser(calls.choice) if calls is not None else None
    for event in writer.start():
        yield event_bytes(event)
    produced = False
    try:
        async with aclosing(generation.events):
            async for event in generation.events:
                if isinstance(event, Delta):
                    produced = produced or bool(event.text)
                    for out in _pieces(writer, parser, event.text):
                        yield event_bytes(out)
                elif isinstance(event, Finished):
                    if event.reason == "timeout" and not produced:
                        raise deadline_error()  # nothing to show for it: the error event below
                    events, result, final = writer.finish(
                        public_reason(event.reason), generation.started.prompt_tokens, event.completion_tokens)
                    result.relaxed = relaxed
                    await keep(result, final)
                    for out in events:
                        yield event_bytes(out)
    except ServiceError as exc:
        yield event_bytes(writer.error(exc))


def _pieces(writer: ResponseWriter, parser, text: str) -> list[dict]:
    if parser is None:
        return writer.text_delta(text)
    events: list[dict] = []
    for piece in parser.feed(text):
        if isinstance(piece, TextPiece):
            events += writer.text_delta(piece.text)
        elif isinstance(piece, CallStart):
            events += writer.call_start(piece.name)
        elif isinstance(piece, ArgumentsPiece):
            events += writer.call_arguments(piece.text)
    return events


async def response_retrieve(request: HttpRequest, response_id: str) -> HttpResponse:
    row = await sync_to_async(stored_response_get)(response_id=response_id, owner=owner_of(request))
    if row is None:
        raise ResponseNotFound(NOT_FOUND.format(id=response_id), param="response_id")
    return json_response(row.response)


async def response_delete(request: HttpRequest, response_id: str) -> HttpResponse:
    if not await sync_to_async(stored_response_delete)(response_id=response_id, owner=owner_of(request)):
        raise ResponseNotFound(NOT_FOUND.format(id=response_id), param="response_id")
    return json_response({"id": response_id, "object": "response", "deleted": True})
