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
from .chat import choice_requests
from .common import (
    SSE_DONE,
    Choice,
    completion_logprobs,
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


async def completion(body: CompletionRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier (the cache layer does)."""
    spec = spec or await tier_spec_aget(model=body.model)
    require_kind(spec, "chat", "completions")
    n = body.n or 1
    requests = [r for prompt in body.to_generations(spec) for r in choice_requests(prompt, n)]
    stream = bool(body.stream)
    first = await open_choice(spec, requests[0], stream=stream)
    ident, created = new_id("cmpl"), now()
    want_logprobs = body.logprobs is not None
    if stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse_response(_stream(spec, first, requests, ident, created, include_usage, want_logprobs, n))
    choices = [await first.collect()]
    for request in requests[1:]:
        choices.append(await (await open_choice(spec, request, stream=False)).collect())
    prompt_tokens = sum(c.started.prompt_tokens for c in choices[::n])
    return json_response(
        {
            **envelope(ident, "text_completion", created, spec),
            "choices": [
                {
                    "index": i,
                    "text": (c.started.echo or "") + "".join(c.text),
                    "logprobs": completion_logprobs(c.logprobs, len(c.started.echo or "")) if want_logprobs else None,
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(choices)
            ],
            "usage": usage(prompt_tokens, sum(c.completion_tokens for c in choices)),
        }
    )


async def _stream(
    spec: ModelSpec,
    first: Choice,
    requests: list[GenerationRequest],
    ident: str,
    created: int,
    include_usage: bool,
    want_logprobs: bool,
    n: int,
) -> AsyncIterator[bytes]:
    base = envelope(ident, "text_completion", created, spec)
    if include_usage:
        base["usage"] = None

    def chunk(index: int, text: str, finish_reason: str | None = None, logprobs: dict | None = None) -> bytes:
        return sse({**base, "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]})

    prompt_tokens = completion_tokens = 0
    try:
        for index, request in enumerate(requests):
            choice = first if index == 0 else await open_choice(spec, request)
            if index % n == 0:
                prompt_tokens += choice.started.prompt_tokens
            offset = 0
            if choice.started.echo:
                yield chunk(index, choice.started.echo)
                offset = len(choice.started.echo)
            finished = None
            async with aclosing(choice.events):
                async for event in choice.events:
                    if isinstance(event, Delta):
                        logprobs = completion_logprobs(event.logprobs or [], offset) if want_logprobs else None
                        offset += len(event.text)
                        yield chunk(index, event.text, logprobs=logprobs)
                    elif isinstance(event, Finished):
                        finished = event
            yield chunk(index, "", finish_reason=finished.reason if finished else "length")
            completion_tokens += finished.completion_tokens if finished else 0
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})
    except ServiceError as exc:
        yield sse_error(exc)
    finally:
        await first.events.aclose()
    yield SSE_DONE
