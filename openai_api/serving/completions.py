"""Legacy text completions: one or more prompts, n choices each, echo, streaming.

https://platform.openai.com/docs/api-reference/completions/object
"""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from django.http import HttpResponse

from inference.events import Delta, Finished
from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import ServiceError
from registry.selectors import tier_spec_aget

from ..schemas.completions import CompletionRequest
from .common import (
    SSE_DONE,
    Generation,
    completion_logprobs,
    envelope,
    json_response,
    new_id,
    now,
    open_generation,
    require_kind,
    sse,
    sse_error,
    sse_response,
    usage,
)


async def completion(body: CompletionRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier (the cache layer does)."""
    spec = spec or await tier_spec_aget(model=body.model)
    require_kind(spec, "chat", "completions")
    requests = body.to_generations(spec)
    stream = bool(body.stream)
    first = await open_generation(spec, requests[0], stream=stream)
    ident, created = new_id("cmpl"), now()
    want_logprobs = body.logprobs is not None
    if stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(_stream(spec, first, requests, ident, created, include_usage, want_logprobs))
    generations = [first] + [await open_generation(spec, r, stream=False) for r in requests[1:]]
    choices = []
    prompt_tokens = completion_tokens = 0
    for p, generation in enumerate(generations):
        echo = generation.started.echo or ""
        prompt_tokens += generation.started.prompt_tokens
        for c in await generation.collect():
            completion_tokens += c.completion_tokens
            choices.append(
                {
                    "index": p * generation.n + c.index,
                    "text": echo + "".join(c.text),
                    "logprobs": completion_logprobs(c.logprobs, len(echo)) if want_logprobs else None,
                    "finish_reason": c.finish_reason,
                }
            )
    return json_response(
        {
            **envelope(ident, "text_completion", created, spec),
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens),
        }
    )


async def _stream(
    spec: ModelSpec,
    first: Generation,
    requests: list[GenerationRequest],
    ident: str,
    created: int,
    include_usage: bool,
    want_logprobs: bool,
) -> AsyncIterator[bytes]:
    base = envelope(ident, "text_completion", created, spec)
    if include_usage:
        base["usage"] = None

    def chunk(index: int, text: str, finish_reason: str | None = None, logprobs: dict | None = None) -> bytes:
        return sse({**base, "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]})

    prompt_tokens = completion_tokens = 0
    generation = first
    try:
        for p, request in enumerate(requests):
            if p:
                generation = await open_generation(spec, request)
            prompt_tokens += generation.started.prompt_tokens
            echo = generation.started.echo
            offsets = [len(echo or "")] * generation.n
            opened = [False] * generation.n
            async with aclosing(generation.events):
                async for event in generation.events:
                    if not isinstance(event, (Delta, Finished)):
                        continue
                    index = p * generation.n + event.index
                    if echo and not opened[event.index]:
                        yield chunk(index, echo)
                    opened[event.index] = True
                    if isinstance(event, Delta):
                        offset = offsets[event.index]
                        logprobs = completion_logprobs(event.logprobs or [], offset) if want_logprobs else None
                        offsets[event.index] = offset + len(event.text)
                        yield chunk(index, event.text, logprobs=logprobs)
                    else:
                        yield chunk(index, "", finish_reason=event.reason)
                        completion_tokens += event.completion_tokens
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})
    except ServiceError as exc:
        yield sse_error(exc)
    finally:
        await generation.events.aclose()
    yield SSE_DONE
