"""Remote tiers (backend `remote`, inference/remote.py): their requests relayed to an upstream
OpenAI-compatible server, with our front (keys, limits, cache, metrics, request ids) in front.

The seam is the serving layer, chosen by the tier's backend once the tier is resolved:
- chat and completions: `remote_endpoint()` swaps the endpoint's live run for a `RemoteRun`
  (runs.py); the renderers, the cache and the SSE framing are the local ones;
- embeddings and rerank: `remote_json()` relays the JSON request and answer;
- the Responses API: `remote_responses()` relays the request and the answer (streamed events
  byte for byte); stored responses and `previous_response_id` are then the upstream's.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

from django.http import HttpResponse, StreamingHttpResponse

from inference.params import ModelSpec
from inference.remote import REMOTE_BACKEND

from ..access import meter_tokens
from ..request_record import note_tokens
from ..serving.common import ServedEndpoint, deadline, json_response, on_response_close, require_kind
from ..serving.respond import respond_live, respond_stored
from ..serving.results import GenerationResult
from .runs import LOCAL_FIELDS, RemoteRun, by_deadline
from .upstream import remote_options, upstream_json, upstream_model, upstream_request

__all__ = ["is_remote", "remote_endpoint", "remote_json", "remote_responses"]


def is_remote(spec: ModelSpec) -> bool:
    return spec.backend == REMOTE_BACKEND


def _chat_renderer(spec: ModelSpec, body: Any):
    from ..serving.chat import ChatRenderer

    choice = getattr(body, "tool_choice", None)
    forced = bool(body.tools) and choice is not None and choice not in ("auto", "none")
    return ChatRenderer(spec, body, forced_calls=forced)


def _completion_renderer(spec: ModelSpec, body: Any):
    from ..serving.completions import CompletionRenderer

    return CompletionRenderer(spec, body)


_RENDERERS = {"chat": (_chat_renderer, "chat/completions", "chat completions"),
              "completions": (_completion_renderer, "completions", "completions")}


def remote_endpoint(endpoint: ServedEndpoint) -> ServedEndpoint:
    """The chat or completions endpoint with its live run relayed upstream (replay unchanged
    except that it skips the local model's request checks)."""
    renderer_for, path, label = _RENDERERS[endpoint.name]

    async def run(body: Any, *, spec: ModelSpec, keep=None) -> HttpResponse:
        require_kind(spec, "chat", label)
        live = RemoteRun(spec, body, path=path)
        response = await respond_live(live, renderer_for(spec, body), stream=bool(body.stream), keep=keep)
        if response.streaming:
            close_on_response_close(response, live.aclose)
        return response

    async def replay(body: Any, *, spec: ModelSpec, result: GenerationResult) -> HttpResponse:
        return respond_stored(result, renderer_for(spec, body), stream=bool(body.stream))

    return ServedEndpoint(endpoint.name, run, replay)


def close_on_response_close(response: HttpResponse, aclose: Callable[[], Awaitable[None]]) -> None:
    """Run `aclose` when the server closes the response (it always does, also when the client
    left before the body was iterated); a no-op if the stream already closed the upstream."""
    loop = asyncio.get_running_loop()
    on_response_close(response, lambda: _background(loop, aclose))


_closing: set[asyncio.Task] = set()  # upstream closes under way (the loop keeps only weak references)


def _background(loop: asyncio.AbstractEventLoop, aclose: Callable[[], Awaitable[None]]) -> None:
    task = loop.create_task(aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _payload(body: Any, spec: ModelSpec) -> dict:
    payload = body.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    for name in LOCAL_FIELDS:
        payload.pop(name, None)
    payload["model"] = upstream_model(spec, remote_options(spec))
    return payload


async def _by_deadline(awaitable: Awaitable[Any]) -> Any:
    """`awaitable`, given up at the request's deadline (REQUEST_TIMEOUT_SECONDS): a 504."""
    return await by_deadline(awaitable, deadline())


async def remote_json(body: Any, *, spec: ModelSpec, path: str) -> HttpResponse:
    """Embeddings or rerank: the upstream's answer, named after our tier, its usage metered."""
    data = await _by_deadline(upstream_json(spec, path, _payload(body, spec)))
    data["model"] = spec.name
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
    await meter_tokens(prompt=tokens)
    note_tokens(prompt_tokens=tokens)
    return json_response(data)


async def remote_responses(body: Any, *, spec: ModelSpec) -> HttpResponse:
    """POST /v1/responses relayed: the whole answer, or its events as they arrive."""
    payload = _payload(body, spec)
    if not body.stream:
        data = await _by_deadline(upstream_json(spec, "responses", payload))
        data["model"] = spec.name
        await _meter_response(data)
        return json_response(data)
    payload["stream"] = True
    request = upstream_request(spec, "responses", payload)
    response = await _by_deadline(request.__aenter__())  # errors before any byte: our status and envelope
    open_request = [request]  # emptied by whichever closes it first

    async def close(exc: BaseException | None = None) -> None:
        if open_request:
            await open_request.pop().__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    async def relayed() -> AsyncIterator[bytes]:
        try:
            async for piece in response.raw():
                yield piece
        except BaseException as exc:
            await close(exc)
            raise
        else:
            await close()

    streamed = StreamingHttpResponse(relayed(), content_type="text/event-stream")
    streamed["Cache-Control"] = "no-cache"
    streamed["X-Accel-Buffering"] = "no"
    close_on_response_close(streamed, close)
    return streamed


async def _meter_response(data: dict) -> None:
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt, completion = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    await meter_tokens(prompt=prompt, completion=completion)
    note_tokens(prompt_tokens=prompt, completion_tokens=completion)
