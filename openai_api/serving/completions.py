"""Legacy text completions: one or more prompts, n choices each, echo, streaming; rendered live
or replayed from a stored result by the same renderer.

https://platform.openai.com/docs/api-reference/completions/object
"""

from __future__ import annotations

from django.http import HttpResponse

from inference.events import TokenLogprob
from inference.params import ModelSpec
from registry.selectors import tier_spec_aget

from ..schemas.completions import CompletionRequest
from ..schemas.objects import Completion, CompletionChoice, CompletionLogprobs
from .choices import ChoiceClosed, ChoiceRun, Output, TextOut
from .common import Keep, ServedEndpoint, TextEvents, new_id, now, require_kind, usage
from .respond import respond_live, respond_stored
from .results import GenerationResult


async def completion(body: CompletionRequest, *, spec: ModelSpec | None = None, keep: Keep | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier; `keep` stores the complete result (the cache)."""
    spec = (spec or await tier_spec_aget(model=body.model)).with_keep_alive(body.keep_alive)
    require_kind(spec, "chat", "completions")
    run = ChoiceRun(spec, body.to_generations(spec), stream=bool(body.stream))
    return await respond_live(run, CompletionRenderer(spec, body), stream=bool(body.stream), keep=keep)


async def completion_replay(body: CompletionRequest, *, spec: ModelSpec, result: GenerationResult) -> HttpResponse:
    """A stored result answered through the same renderer as a live one."""
    body.to_generations(spec)  # the same checks as a live request
    return respond_stored(result, CompletionRenderer(spec, body), stream=bool(body.stream))


COMPLETIONS = ServedEndpoint("completions", completion, completion_replay)


class CompletionRenderer:
    """The one shape of a completion: whole, or as chunks (the same ones live and replayed)."""

    def __init__(self, spec: ModelSpec, body: CompletionRequest):
        self.ident, self.created = new_id("cmpl"), now()
        self.model, self.fingerprint = spec.name, f"fp_{spec.config_key}"
        self.logprobs = body.logprobs is not None
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self._offsets: dict[int, int] = {}  # per choice: text sent so far (logprobs' text_offset)
        self.text_events = TextEvents(
            lambda index, text: self._object([CompletionChoice(index=index, text=text, logprobs=None, finish_reason=None)]))

    def _object(self, choices: list[CompletionChoice]) -> Completion:
        obj = Completion(id=self.ident, object="text_completion", created=self.created, model=self.model,
                         system_fingerprint=self.fingerprint, choices=choices)
        if self.include_usage:
            obj.usage = None
        return obj

    def chunk(self, out: Output) -> Completion | bytes | None:
        if isinstance(out, TextOut):
            offset = self._offsets.get(out.index, 0)
            self._offsets[out.index] = offset + len(out.text)
            if not self.logprobs:
                return self.text_events.event(out.index, out.text)  # the per-token case, pre-serialised
            logprobs = completion_logprobs(out.logprobs or [], offset)
            return self._object([CompletionChoice(index=out.index, text=out.text, logprobs=logprobs, finish_reason=None)])
        if isinstance(out, ChoiceClosed):
            return self._object([CompletionChoice(index=out.index, text="", logprobs=None, finish_reason=out.finish_reason)])
        return None  # opened: nothing to say until there is text

    def closing(self, result: GenerationResult) -> list[Completion]:
        if not self.include_usage:
            return []
        return [Completion(id=self.ident, object="text_completion", created=self.created, model=self.model,
                           system_fingerprint=self.fingerprint, choices=[],
                           usage=usage(result.prompt_tokens, result.completion_tokens))]

    def whole(self, result: GenerationResult) -> Completion:
        choices = [
            CompletionChoice(index=c.index, text=c.text, finish_reason=c.finish_reason,
                             logprobs=completion_logprobs(c.logprobs or [], 0) if self.logprobs else None)
            for c in result.choices
        ]
        return Completion(id=self.ident, object="text_completion", created=self.created, model=self.model,
                          system_fingerprint=self.fingerprint, choices=choices,
                          usage=usage(result.prompt_tokens, result.completion_tokens))


def completion_logprobs(entries: list[TokenLogprob], offset: int) -> CompletionLogprobs:
    """The legacy completions shape: parallel lists, text offsets from `offset`."""
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e.token)
    return CompletionLogprobs(
        tokens=[e.token for e in entries],
        token_logprobs=[e.logprob for e in entries],
        top_logprobs=[{t: lp for t, lp, _ in e.top} for e in entries],
        text_offset=offsets,
    )
