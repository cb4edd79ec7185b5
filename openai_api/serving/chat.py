"""Chat completions: run the choices, shape them as OpenAI chat objects or chunks.

https://platform.openai.com/docs/api-reference/chat/object
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from django.http import HttpResponse

from inference.constraints import ToolCalls
from inference.events import Delta, Finished
from inference.params import ModelSpec
from llmservice.errors import ServiceError
from registry.selectors import tier_spec_aget

from ..schemas.chat import ChatCompletionRequest
from .common import (
    SSE_DONE,
    Generation,
    Outcome,
    chat_logprobs,
    deadline,
    deadline_error,
    envelope,
    json_response,
    new_id,
    now,
    open_generation,
    public_reason,
    require_kind,
    sse,
    sse_error,
    sse_response,
    usage,
    with_relaxed,
)
from .tool_calls import ToolCallDeltas, chat_message, finish_reason


async def chat_completion(body: ChatCompletionRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier (the cache layer does)."""
    spec = spec or await tier_spec_aget(model=body.model)
    require_kind(spec, "chat", "chat completions")
    request = body.to_generation(spec)
    calls = request.constraint if isinstance(request.constraint, ToolCalls) else None
    stream = bool(body.stream)
    outcome = Outcome()
    generation = await open_generation(spec, request, stream=stream, deadline=deadline(), outcome=outcome)
    ident, created = new_id("chatcmpl"), now()
    if stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        response = with_relaxed(sse_response(_stream(spec, generation, ident, created, include_usage, calls)), generation)
        response.outcome = outcome
        return response
    outputs = await generation.collect()
    if outcome.timed_out and not any("".join(c.text) for c in outputs):
        raise deadline_error()
    shaped = []
    for c in outputs:
        message, called = chat_message("".join(c.text), calls, generation.started.tool_format)
        shaped.append(
            {
                "index": c.index,
                "message": message,
                "logprobs": chat_logprobs(c.logprobs) if body.logprobs else None,
                "finish_reason": finish_reason(c.finish_reason, called),
            }
        )
    payload = {
        **envelope(ident, "chat.completion", created, spec),
        "choices": shaped,
        "usage": usage(generation.started.prompt_tokens, sum(c.completion_tokens for c in outputs)),
    }
    response = with_relaxed(json_response(payload), generation)
    response.outcome = outcome
    return response


async def _stream(
    spec: ModelSpec,
    generation: Generation,
    ident: str,
    created: int,
    include_usage: bool,
    calls: ToolCalls | None,
) -> AsyncIterator[bytes]:
    base = envelope(ident, "chat.completion.chunk", created, spec)
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish_reason: str | None = None, logprobs: dict | None = None) -> bytes:
        return sse(
            {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}
        )

    tool_format = generation.started.tool_format
    parsers = [ToolCallDeltas(calls, tool_format) if calls is not None else None for _ in range(generation.n)]
    opened = [False] * generation.n
    produced = False  # any text yet, in any choice
    completion_tokens = 0
    try:
        async with aclosing(generation.events):
            async for event in generation.events:
                if not isinstance(event, (Delta, Finished)):
                    continue
                index, parser = event.index, parsers[event.index]
                if not opened[index]:
                    opened[index] = True
                    yield chunk(index, parser.first_delta if parser else {"role": "assistant", "content": ""})
                if isinstance(event, Delta):
                    produced = produced or bool(event.text)
                    logprobs = chat_logprobs(event.logprobs) if event.logprobs else None
                    if parser is None:
                        yield chunk(index, {"content": event.text}, logprobs=logprobs)
                        continue
                    for delta in parser.feed(event.text):
                        yield chunk(index, delta, logprobs=logprobs)
                        logprobs = None
                else:
                    if event.reason == "timeout" and not produced:
                        raise deadline_error()  # nothing to show for it: the error event below
                    called = bool(parser and parser.called)
                    yield chunk(index, {}, finish_reason=finish_reason(public_reason(event.reason), called))
                    completion_tokens += event.completion_tokens
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(generation.started.prompt_tokens, completion_tokens)})
    except ServiceError as exc:
        yield sse_error(exc)
    yield SSE_DONE
