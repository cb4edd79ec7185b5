"""The Responses API: create (whole or streamed), retrieve and delete stored responses.

A request's conversation is resolved first (`previous_response_id` -> the stored turns it
continues), then keyed for the cache, then run as chat and completions are: a `ChoiceRun`
(serving/choices.py) whose outputs `ResponseWriter` renders, live, whole or replayed from the
cache's `GenerationResult` (with single flight, serving/../cache.py). With `store` (default
true) the response object sent is kept (`registry.StoredResponse`, for RESPONSES_RETENTION_DAYS;
with API keys on, only the key that made it can see it), before its last event goes out.

https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

import time
import uuid
from typing import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import ResponseNotFound, ServiceError
from registry.selectors import stored_response_get
from registry.services import stored_response_create, stored_response_delete

from ..access import Meter, authorized_tier
from ..cache import cached_run
from ..remote import is_remote, remote_responses
from ..schemas.responses import ITEMS, InputItem, ResponseCreateRequest, items_json
from .choices import ChoiceRun
from .common import Keep, ServedEndpoint, json_response, require_kind, sse_response, with_relaxed
from .responses_render import Echo, ResponseWriter, event_bytes
from .results import GenerationResult

NOT_FOUND = "Response with id '{id}' not found."
PREVIOUS_NOT_FOUND = "Previous response with id '{id}' not found."
ENDPOINT = "responses"
# Fields that never change an answer: framing, labels, what is echoed, and what the resolved
# conversation (the key's "messages") already holds.
UNKEYED = (
    "input", "instructions", "previous_response_id", "store", "stream", "stream_options", "user", "metadata",
    "prompt_cache_key", "prompt_cache_retention", "safety_identifier", "service_tier", "keep_alive",
)


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
    spec = spec.with_keep_alive(body.keep_alive)
    require_kind(spec, "chat", "responses")
    if is_remote(spec):  # issue 16: relayed to the tier's upstream
        return await remote_responses(body, spec=spec)
    owner = owner_of(request)
    history = await history_of(body.previous_response_id, owner)
    generation = body.to_generation(spec, history)
    keyed = {k: v for k, v in body.model_dump(mode="json", by_alias=True, exclude_none=True).items() if k not in UNKEYED}
    keyed.update(model=tier.name, messages=[m.as_template_dict() for m in generation.messages])
    creation = _Creation(body, generation, tier.name, owner, conversation=items_json(history) + items_json(body.input_items()))
    endpoint = ServedEndpoint(ENDPOINT, creation.run, creation.replay)
    return await cached_run(request, body, tier=tier, spec=spec, endpoint=endpoint, keyed=keyed)


class _Creation:
    """One POST /v1/responses: run live or replayed, rendered by one writer, stored (store: true)."""

    def __init__(self, body: ResponseCreateRequest, generation: GenerationRequest, tier: str, owner: int | None,
                 *, conversation: list[dict]):
        self.body, self.generation, self.tier, self.owner, self.conversation = body, generation, tier, owner, conversation

    def _writer(self, spec: ModelSpec) -> ResponseWriter:
        return ResponseWriter(f"resp_{uuid.uuid4().hex}", int(time.time()), Echo(spec.name, self.body, self.generation.sampling))

    async def _store(self, final: dict) -> None:
        """Kept before the last event goes out, so a client may continue from it at once."""
        if self.body.stored:
            await sync_to_async(stored_response_create)(
                response_id=final["id"], tier=self.tier, owner=self.owner, status=final["status"],
                input_items=self.conversation, response=final, retention_days=settings.RESPONSES_RETENTION_DAYS,
            )

    async def run(self, body: ResponseCreateRequest, *, spec: ModelSpec, keep: Keep | None = None) -> HttpResponse:
        run = ChoiceRun(spec, [self.generation], stream=bool(body.stream))
        await run.start()  # errors (404, 400, 429, ...) come before any byte
        writer = self._writer(spec)
        if body.stream:
            return with_relaxed(sse_response(self._events(run, writer, keep)), run.result.relaxed)
        result = await run.collect()
        final = writer.whole(result)
        await self._finish(result, final, keep)
        return with_relaxed(json_response(final), result.relaxed)

    async def _finish(self, result: GenerationResult, final: dict, keep: Keep | None) -> None:
        await self._store(final)
        if keep is not None and not result.timed_out:
            await keep(result)

    async def _events(self, run: ChoiceRun, writer: ResponseWriter, keep: Keep | None) -> AsyncIterator[bytes]:
        try:
            for event in writer.start():
                yield event_bytes(event)
            async for out in run.outputs():
                events = writer.output(out)
                if events:
                    yield b"".join(event_bytes(e) for e in events)
            closing = writer.finish(run.result)
            await self._finish(run.result, writer.final, keep)
            yield b"".join(event_bytes(e) for e in closing)
        except ServiceError as exc:
            yield event_bytes(writer.error(exc))

    async def replay(self, body: ResponseCreateRequest, *, spec: ModelSpec, result: GenerationResult) -> HttpResponse:
        """A cached answer, rendered as a live one is (new ids), and stored like one."""
        writer = self._writer(spec)
        events = list(writer.replay(result))
        await self._store(writer.final)
        if not body.stream:
            return with_relaxed(json_response(writer.final), result.relaxed)

        async def chunks() -> AsyncIterator[bytes]:
            for event in events:
                yield event_bytes(event)

        return with_relaxed(sse_response(chunks()), result.relaxed)


async def response_retrieve(request: HttpRequest, response_id: str) -> HttpResponse:
    row = await sync_to_async(stored_response_get)(response_id=response_id, owner=owner_of(request))
    if row is None:
        raise ResponseNotFound(NOT_FOUND.format(id=response_id), param="response_id")
    return json_response(row.response)


async def response_delete(request: HttpRequest, response_id: str) -> HttpResponse:
    if not await sync_to_async(stored_response_delete)(response_id=response_id, owner=owner_of(request)):
        raise ResponseNotFound(NOT_FOUND.format(id=response_id), param="response_id")
    return json_response({"id": response_id, "object": "response", "deleted": True})
