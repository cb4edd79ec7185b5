"""Legacy text completions: one or more prompts, n choices each, echo, streaming.

https://platform.openai.com/docs/api-reference/completions/object
"""

from __future__ import annotations

from contextlib import aclosing
from typing import AsyncIterator

from django.http import HttpResponse

from inference.events import Delta, Finished
from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import DeadlineExceeded, ServiceError
from registry.selectors import tier_spec_aget

from ..schemas.completions import CompletionRequest
from .common import (
    SSE_DONE,
    ChoiceOutput,
    Generation,
    Outcome,
    completion_logprobs,
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


async def completion(body: CompletionRequest, *, spec: ModelSpec | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier (the cache layer does)."""
    spec = spec or await tier_spec_aget(model=body.model)
    require_kind(spec, "chat", "completions")
    requests = body.to_generations(spec)
    stream = bool(body.stream)
    outcome, ends = Outcome(), deadline()
    first = await open_generation(spec, requests[0], stream=stream, deadline=ends, outcome=outcome)
    ident, created = new_id("cmpl"), now()
    want_logprobs = body.logprobs is not None
    if stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        response = with_relaxed(
            sse_response(_stream(spec, first, requests, ident, created, include_usage, want_logprobs, ends, outcome)), first
        )
        response.outcome = outcome
        return response
    choices = []
    prompt_tokens = completion_tokens = 0
    for p, request in enumerate(requests):
        try:
            generation = first if p == 0 else await open_generation(spec, request, stream=False, deadline=ends, outcome=outcome)
        except DeadlineExceeded:  # the prompts before this one have answers: keep them, cut the rest
            outcome.timed_out = True
            generation = None
        echo = (generation.started.echo or "") if generation else ""
        prompt_tokens += generation.started.prompt_tokens if generation else 0
        outputs = await generation.collect() if generation else [ChoiceOutput(i) for i in range(request.n)]
        for c in outputs:
            completion_tokens += c.completion_tokens
            choices.append(
                {
                    "index": p * request.n + c.index,
                    "text": echo + "".join(c.text),
                    "logprobs": completion_logprobs(c.logprobs, len(echo)) if want_logprobs else None,
                    "finish_reason": c.finish_reason,
                }
            )
    if outcome.timed_out and not any(c["text"] for c in choices):
        raise deadline_error()
    payload = {
        **envelope(ident, "text_completion", created, spec),
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
    }
    response = with_relaxed(json_response(payload), first)
    response.outcome = outcome
    return response


async def _stream(
    spec: ModelSpec,
    first: Generation,
    requests: list[GenerationRequest],
    ident: str,
    created: int,
    include_usage: bool,
    want_logprobs: bool,
    ends: float | None,
    outcome: Outcome,
) -> AsyncIterator[bytes]:
    base = envelope(ident, "text_completion", created, spec)
    if include_usage:
        base["usage"] = None

    def chunk(index: int, text: str, finish_reason: str | None = None, logprobs: dict | None = None) -> bytes:
        return sse({**base, "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]})

    prompt_tokens = completion_tokens = 0
    produced = False  # any text yet, in any choice of any prompt
    generation = first
    try:
        for p, request in enumerate(requests):
            if p:
                try:
                    generation = await open_generation(spec, request, deadline=ends, outcome=outcome)
                except DeadlineExceeded:
                    if not produced:
                        raise
                    outcome.timed_out = True  # the answers so far stand; the remaining prompts are cut
                    break
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
                        produced = produced or bool(event.text)
                        offset = offsets[event.index]
                        logprobs = completion_logprobs(event.logprobs or [], offset) if want_logprobs else None
                        offsets[event.index] = offset + len(event.text)
                        yield chunk(index, event.text, logprobs=logprobs)
                    else:
                        if event.reason == "timeout" and not produced:
                            raise deadline_error()  # nothing to show for it: the error event below
                        yield chunk(index, "", finish_reason=public_reason(event.reason))
                        completion_tokens += event.completion_tokens
        if include_usage:
            yield sse({**base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)})
    except ServiceError as exc:
        yield sse_error(exc)
    finally:
        await generation.events.aclose()
    yield SSE_DONE
