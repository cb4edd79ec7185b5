"""Chat completions: run the choices, shape them as OpenAI chat objects or chunks.

https://platform.openai.com/docs/api-reference/chat/object
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

import dataclasses
from contextlib import aclosing
from typing import AsyncIterator

from django.http import HttpResponse

from inference.events import Delta, Finished
from inference.params import GenerationRequest, ModelSpec, ToolUse
from llmservice.errors import ServiceError
from registry.selectors import tier_spec_aget

from ..schemas.chat import ChatCompletionRequest
from .common import (
    SSE_DONE,
    Choice,
    chat_logprobs,
    envelope,
    json_response,
    new_id,
    now,
    open_choice,
    require_kind,
    sse,
    sse_error,
    sse_response,
    usage,
)
from .tool_calls import ToolCallDeltas, chat_message, finish_reason


def choice_requests(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """n independent generations; with a seed, choice i uses seed + i so they differ reproducibly."""
    seed = request.sampling.seed
    if n == 1:
        return [request]
    return [
        dataclasses.replace(request, sampling=request.sampling.with_seed(None if seed is None else seed + i))
        for i in range(n)
    ]


async def chat_completion(body: ChatCompletionRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier (the cache layer does)."""
    spec = spec or await tier_spec_aget(model=body.model)
    require_kind(spec, "chat", "chat completions")
    generation = body.to_generation(spec)
    use = generation.constraint if isinstance(generation.constraint, ToolUse) else None
    requests = choice_requests(generation, body.n or 1)
    stream = bool(body.stream)
    first = await open_choice(spec, requests[0], stream=stream)
    ident, created = new_id("chatcmpl"), now()
    if stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(_stream(spec, first, requests, ident, created, include_usage, use))
    choices = [await first.collect()]
    for request in requests[1:]:
        choices.append(await (await open_choice(spec, request, stream=False)).collect())
    shaped = []
    for i, c in enumerate(choices):
        message, called = chat_message("".join(c.text), use)
        shaped.append(
            {
                "index": i,
                "message": message,
                "logprobs": chat_logprobs(c.logprobs) if body.logprobs else None,
                "finish_reason": finish_reason(c.finish_reason, called),
            }
        )
    return json_response(
        {
            **envelope(ident, "chat.completion", created, spec),
            "choices": shaped,
            "usage": usage(first.started.prompt_tokens, sum(c.completion_tokens for c in choices)),
        }
    )


async def _stream(
    spec: ModelSpec,
    first: Choice,
    requests: list[GenerationRequest],
    ident: str,
    created: int,
    include_usage: bool,
    use: ToolUse | None,
) -> AsyncIterator[bytes]:
    base = envelope(ident, "chat.completion.chunk", created, spec)
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> bytes:
        return sse(
            {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}
        )

    completion_tokens = 0
    try:
        for index, request in enumerate(requests):
            choice = first if index == 0 else await open_choice(spec, request)
            calls = ToolCallDeltas(use) if use is not None else None
            yield chunk(index, calls.first_delta if calls else {"role": "assistant", "content": ""})
            finished = None
            async with aclosing(choice.events):
                async for event in choice.events:
                    if isinstance(event, Delta):
                        logprobs = chat_logprobs(event.logprobs) if event.logprobs else None
                        if calls is None:
                            yield chunk(index, {"content": event.text}, logprobs=logprobs)
                            continue
                        for delta in calls.feed(event.text):
                            yield chunk(index, delta, logprobs=logprobs)
                            logprobs = None
                    elif isinstance(event, Finished):
                        finished = event
            reason = finished.reason if finished else "length"
            yield chunk(index, {}, finish_reason=finish_reason(reason, bool(calls and calls.called)))
            completion_tokens += finished.completion_tokens if finished else 0
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(first.started.prompt_tokens, completion_tokens)})
    except ServiceError as exc:
        yield sse_error(exc)
    finally:
        await first.events.aclose()
    yield SSE_DONE
