"""Chat completions: run the choices, render them as chat objects or chunks (live or replayed).

https://platform.openai.com/docs/api-reference/chat/object
https://platform.openai.com/docs/api-reference/chat-streaming
"""

from __future__ import annotations

from django.http import HttpResponse

from inference.constraints import ToolCalls
from inference.events import TokenLogprob
from inference.params import ModelSpec
from registry.selectors import tier_spec_aget

from ..schemas.chat import ChatCompletionRequest
from ..schemas.objects import (
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatDelta,
    ChatLogprobs,
    ChunkFunction,
    ChunkToolCall,
    FunctionCallObject,
    TokenLogprobObject,
    ToolCallObject,
    TopLogprob,
)
from .choices import ArgumentsOut, CallOpened, ChoiceClosed, ChoiceOpened, ChoiceRun, Output, ReasoningOut, TextOut
from .common import Keep, ServedEndpoint, TextEvents, new_id, now, require_kind, usage
from .respond import respond_live, respond_stored
from .results import GenerationResult


async def chat_completion(body: ChatCompletionRequest, *, spec: ModelSpec | None = None, keep: Keep | None = None) -> HttpResponse:
    """`spec` when the caller already resolved the tier; `keep` stores the complete result (the cache)."""
    spec = (spec or await tier_spec_aget(model=body.model)).with_keep_alive(body.keep_alive)
    require_kind(spec, "chat", "chat completions")
    run = ChoiceRun(spec, [body.to_generation(spec)], stream=bool(body.stream))
    renderer = ChatRenderer(spec, body, forced_calls=bool(run.calls and run.calls.choice != "auto"))
    return await respond_live(run, renderer, stream=bool(body.stream), keep=keep)


async def chat_replay(body: ChatCompletionRequest, *, spec: ModelSpec, result: GenerationResult) -> HttpResponse:
    """A stored result answered through the same renderer as a live one."""
    request = body.to_generation(spec)  # the same checks as a live request
    calls = request.constraint if isinstance(request.constraint, ToolCalls) else None
    renderer = ChatRenderer(spec, body, forced_calls=bool(calls and calls.choice != "auto"))
    return respond_stored(result, renderer, stream=bool(body.stream))


CHAT = ServedEndpoint("chat", chat_completion, chat_replay)


class ChatRenderer:
    """The one shape of a chat answer: whole, or as chunks (the same ones live and replayed)."""

    def __init__(self, spec: ModelSpec, body: ChatCompletionRequest, *, forced_calls: bool):
        self.ident, self.created = new_id("chatcmpl"), now()
        self.model, self.fingerprint = spec.name, f"fp_{spec.config_key}"
        self.logprobs = bool(body.logprobs)
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.forced_calls = forced_calls  # OpenAI opens a forced tool call's message with content null
        self.text_events = TextEvents(lambda index, text: self._chunk(index, ChatDelta(content=text)))

    def _chunk(self, index: int, delta: ChatDelta, finish_reason: str | None = None,
               logprobs: ChatLogprobs | None = None) -> ChatCompletionChunk:
        chunk = ChatCompletionChunk(
            id=self.ident, object="chat.completion.chunk", created=self.created, model=self.model,
            system_fingerprint=self.fingerprint,
            choices=[ChatChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish_reason)],
        )
        if self.include_usage:
            chunk.usage = None
        return chunk

    def chunk(self, out: Output) -> ChatCompletionChunk | bytes | None:
        if isinstance(out, TextOut):
            if not (self.logprobs and out.logprobs):
                return self.text_events.event(out.index, out.text)  # the per-token case, pre-serialised
            logprobs = chat_logprobs(out.logprobs) if self.logprobs and out.logprobs else None
            return self._chunk(out.index, ChatDelta(content=out.text), logprobs=logprobs)
        if isinstance(out, ReasoningOut):
            return self._chunk(out.index, ChatDelta(reasoning_content=out.text))
        if isinstance(out, CallOpened):
            call = ChunkToolCall(index=out.call, id=out.id, type="function", function=ChunkFunction(name=out.name, arguments=""))
            return self._chunk(out.index, ChatDelta(tool_calls=[call]))
        if isinstance(out, ArgumentsOut):
            call = ChunkToolCall(index=out.call, function=ChunkFunction(arguments=out.text))
            return self._chunk(out.index, ChatDelta(tool_calls=[call]))
        if isinstance(out, ChoiceOpened):
            return self._chunk(out.index, ChatDelta(role="assistant", content=None if self.forced_calls else ""))
        if isinstance(out, ChoiceClosed):
            return self._chunk(out.index, ChatDelta(), finish_reason=out.finish_reason)
        return None

    def closing(self, result: GenerationResult) -> list[ChatCompletionChunk]:
        if not self.include_usage:
            return []
        return [ChatCompletionChunk(
            id=self.ident, object="chat.completion.chunk", created=self.created, model=self.model,
            system_fingerprint=self.fingerprint, choices=[], usage=usage(result.prompt_tokens, result.completion_tokens),
        )]

    def whole(self, result: GenerationResult) -> ChatCompletion:
        choices = []
        for c in result.choices:
            message = ChatCompletionMessage(role="assistant", content=None if c.tool_calls else c.text, refusal=None)
            if c.tool_calls:
                message.tool_calls = [
                    ToolCallObject(id=t.id, type="function", function=FunctionCallObject(name=t.name, arguments=t.arguments))
                    for t in c.tool_calls
                ]
            if c.reasoning is not None:
                message.reasoning_content = c.reasoning
            logprobs = chat_logprobs(c.logprobs or []) if self.logprobs else None
            choices.append(ChatCompletionChoice(index=c.index, message=message, logprobs=logprobs, finish_reason=c.finish_reason))
        return ChatCompletion(
            id=self.ident, object="chat.completion", created=self.created, model=self.model,
            system_fingerprint=self.fingerprint, choices=choices,
            usage=usage(result.prompt_tokens, result.completion_tokens),
        )


def chat_logprobs(entries: list[TokenLogprob]) -> ChatLogprobs:
    """https://platform.openai.com/docs/api-reference/chat/object#chat/object-choices"""
    return ChatLogprobs(
        content=[
            TokenLogprobObject(
                token=e.token, logprob=e.logprob, bytes=e.bytes,
                top_logprobs=[TopLogprob(token=t, logprob=lp, bytes=b) for t, lp, b in e.top],
            )
            for e in entries
        ],
        refusal=None,
    )
