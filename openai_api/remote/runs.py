"""Chat and completions on a remote tier: the client's request relayed upstream, the upstream's
chunks read as they arrive and turned into the same neutral outputs a local run gives.

So everything in front stays ours: the endpoint's renderer shapes each upstream chunk into our
chunk at once (streaming is relayed chunk by chunk, never buffered), the cache stores the neutral
`GenerationResult` (a hit is rendered like a local one), tokens are metered from the upstream's
usage. The upstream is always asked to stream (with usage), so its first byte comes early and a
client's disconnect closes the upstream stream at once.

Structured output and tools are passed as the client sent them (the upstream enforces them);
with `trust_json_schema` off, a `json_schema` answer is validated here first and an answer that
does not match is an error (a streamed one is then held back until it is checked).

The request's deadline (REQUEST_TIMEOUT_SECONDS from its arrival) holds as for a local tier: past
it the upstream's stream is closed, an answer with some text ends with finish_reason "length",
one with none is a 504 (`DeadlineExceeded`), and neither is cached. A deadline is no failure of
the upstream's: it does not count towards its circuit breaker.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing
from typing import Any, AsyncIterator, Awaitable

from asgiref.sync import sync_to_async

from inference.events import TokenLogprob
from inference.params import ModelSpec
from llmservice.errors import UpstreamFailed

from ..access import meter_tokens
from ..request_record import new_generation_stats
from ..serving.choices import ArgumentsOut, CallOpened, ChoiceClosed, ChoiceOpened, Output, ReasoningOut, TextOut, call_id
from ..serving.common import deadline, deadline_error, public_reason
from ..serving.results import ChoiceResult, GenerationResult, ToolCallResult
from .upstream import remote_options, sse_events, upstream_model, upstream_request

SCHEMA_MISMATCH = "The upstream's answer (choice {index}) does not match the requested json_schema: {reason}"
NOT_JSON = "The upstream's answer (choice {index}) is not JSON: {reason}"
# Ours only: never sent upstream (framing we rebuild, and llmservice's own extensions).
LOCAL_FIELDS = ("stream", "stream_options", "keep_alive")


def upstream_payload(body: Any, spec: ModelSpec) -> dict[str, Any]:
    """The client's request as the upstream gets it: the fields the client set, the tier's soft
    defaults for the sampling fields it left out, the upstream's model name, always streamed."""
    payload = body.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    for name in LOCAL_FIELDS:
        payload.pop(name, None)
    for name, value in spec.defaults.items():
        if name == "max_tokens" and "max_completion_tokens" in payload:
            continue
        payload.setdefault(name, list(value) if isinstance(value, tuple) else value)
    payload.update(model=upstream_model(spec, remote_options(spec)), stream=True,
                   stream_options={"include_usage": True})
    return payload


async def by_deadline(awaitable: Awaitable[Any], ends: float | None) -> Any:
    """`awaitable`, given up at `ends` (time.monotonic(); None: never) as a 504 `DeadlineExceeded`."""
    try:
        async with asyncio.timeout(None if ends is None else ends - time.monotonic()):
            return await awaitable
    except TimeoutError:
        raise deadline_error() from None


def required_schema(body: Any) -> dict | None:
    """The json_schema the answer must match, if the request asks for one."""
    rf = getattr(body, "response_format", None)
    if rf is None or getattr(rf, "type", None) != "json_schema":
        return None
    data = rf.model_dump(mode="json", by_alias=True)
    return (data.get("json_schema") or {}).get("schema") or {}


class RemoteRun:
    """A run (as `ChoiceRun`: start, outputs, result, collect) whose choices come from upstream."""

    def __init__(self, spec: ModelSpec, body: Any, *, path: str):
        self.spec, self.body, self.path = spec, body, path
        options = remote_options(spec)
        self.schema = None if options.trust_json_schema else required_schema(body)
        self.result = GenerationResult(choices=[])
        self.stats = new_generation_stats()
        self.ends = deadline()  # time.monotonic() past which the answer is cut, or None
        self._request = None  # the open upstream request (an async context manager)
        self._events: AsyncIterator[dict] | None = None
        self._watch: asyncio.TimerHandle | None = None  # closes the upstream's stream at the deadline
        self._expired = False

    async def start(self) -> None:
        """Send the request; errors (4xx passed through, 502, 504) come before any byte."""
        request = upstream_request(self.spec, self.path, upstream_payload(self.body, self.spec))
        response = await by_deadline(request.__aenter__(), self.ends)
        self._request = request
        self._events = sse_events(response)
        if self.ends is not None:
            self._watch = asyncio.get_running_loop().call_later(self.ends - time.monotonic(), self._expire, response)

    def _expire(self, response) -> None:
        """The deadline passed: the upstream's stream is closed, which ends the events being read."""
        self._expired = True
        response.close()

    async def collect(self) -> GenerationResult:
        async for _ in self.outputs():
            pass
        return self.result

    async def outputs(self) -> AsyncIterator[Output]:
        """The outputs as the upstream's chunks arrive. Closing this iterator (the client left:
        the SSE body is closed, or the request task cancelled) closes the upstream's stream at
        once, so the upstream stops generating."""
        try:
            if self.schema is None:
                async with aclosing(self._read()) as outs:
                    async for out in outs:
                        yield out
            else:  # held back: nothing reaches the client before the answer is checked
                outs = [out async for out in self._read()]
                await sync_to_async(self._validate)()
                for out in outs:
                    yield out
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream's stream now (idempotent): also for a stream whose body was never
        iterated (the client left before its first byte)."""
        if self._watch is not None:
            self._watch.cancel()
        request, self._request = self._request, None
        if request is not None:
            await request.__aexit__(None, None, None)

    async def _read(self) -> AsyncIterator[Output]:
        choices: dict[int, _Choice] = {}
        stats = self.stats
        stats.queued_at = stats.started_at = time.perf_counter()
        got_usage = False
        async for event in self._events_with_errors():
            for data in event.get("choices") or ():
                index = int(data.get("index", 0))
                choice = choices.get(index)
                if choice is None:
                    choice = choices[index] = _Choice(ChoiceResult(index))
                    self.result.choices.append(choice.result)
                    yield ChoiceOpened(index)
                for out in choice.feed(data):
                    if stats.first_token_at is None and isinstance(out, (TextOut, ReasoningOut, CallOpened)):
                        stats.first_token_at = time.perf_counter()
                    yield out
            usage = event.get("usage")
            if isinstance(usage, dict):
                got_usage = True
                prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
                self.result.prompt_tokens = prompt
                if self.result.choices:
                    self.result.choices[0].completion_tokens = completion  # the upstream counts per request
                await meter_tokens(prompt=prompt, completion=completion)
                stats.prompt_tokens, stats.completion_tokens = prompt, completion
                if stats.first_token_at is not None and completion > 1:
                    stats.decode_seconds = time.perf_counter() - stats.first_token_at
                    stats.decode_intervals = completion - 1
        if self._expired:
            self.result.timed_out = True  # never cached
            if stats.first_token_at is None:
                raise deadline_error()  # nothing to show for it: a 504
        if not got_usage:  # an upstream that sends no usage when streaming (llama_cpp.server): pieces counted
            pieces = sum(c.pieces for c in choices.values())
            if self.result.choices:
                self.result.choices[0].completion_tokens = pieces
            await meter_tokens(completion=pieces)
            stats.completion_tokens = pieces
        for choice in choices.values():
            if not choice.closed:  # the upstream ended without a finish reason
                yield choice.close("length")
        self.result.choices.sort(key=lambda c: c.index)

    async def _events_with_errors(self) -> AsyncIterator[dict]:
        """The upstream's events; a stream broken off or timing out mid-way becomes our error
        (raised by `upstream_request` on the way out)."""
        try:
            async for event in self._events:
                yield event
        except BaseException as exc:
            request, self._request = self._request, None
            if self._expired and isinstance(exc, Exception):  # the deadline closed the stream: no failure
                if request is not None:
                    await request.__aexit__(None, None, None)
                return
            if request is not None and not isinstance(exc, GeneratorExit):
                await request.__aexit__(type(exc), exc, exc.__traceback__)  # raises UpstreamTimeout/Failed
            raise

    def _validate(self) -> None:
        import jsonschema  # only untrusted upstreams need it: its import is not paid by every process

        for c in self.result.choices:
            try:
                jsonschema.validate(_json(c), self.schema)
            except jsonschema.ValidationError as exc:
                raise UpstreamFailed(SCHEMA_MISMATCH.format(index=c.index, reason=exc.message)) from None
            except ValueError as exc:
                raise UpstreamFailed(NOT_JSON.format(index=c.index, reason=exc)) from None


def _json(choice: ChoiceResult) -> Any:
    return json.loads(choice.text)


class _Choice:
    """One upstream choice: its deltas (chat) or text pieces (completions) -> neutral outputs."""

    __slots__ = ("result", "closed", "pieces", "_calls")

    def __init__(self, result: ChoiceResult):
        self.result = result
        self.closed = False
        self.pieces = 0  # text pieces received (about one token each)
        self._calls: dict[int, ToolCallResult] = {}

    def feed(self, data: dict) -> list[Output]:
        index, outs = self.result.index, []
        delta = data.get("delta")
        if isinstance(delta, dict):  # chat
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                self.result.reasoning = (self.result.reasoning or "") + reasoning
                outs.append(ReasoningOut(index, reasoning))
            logprobs = _chat_logprobs(data.get("logprobs"))
            if delta.get("content") or logprobs:
                outs.append(self._text(delta.get("content") or "", logprobs))
            for call in delta.get("tool_calls") or ():
                outs.extend(self._call(call))
        elif data.get("text") or data.get("logprobs"):  # completions
            outs.append(self._text(data.get("text") or "", _completion_logprobs(data.get("logprobs"))))
        if data.get("finish_reason"):
            outs.append(self.close(data["finish_reason"]))
        return outs

    def _text(self, text: str, logprobs: list[TokenLogprob] | None) -> TextOut:
        self.pieces += 1
        self.result.text += text
        if logprobs:
            self.result.logprobs = (self.result.logprobs or []) + logprobs
        return TextOut(self.result.index, text, logprobs)

    def _call(self, call: dict) -> list[Output]:
        n = int(call.get("index", len(self._calls)))
        function = call.get("function") or {}
        outs: list[Output] = []
        if n not in self._calls:
            tool = self._calls[n] = ToolCallResult(call.get("id") or call_id(), function.get("name") or "")
            self.result.tool_calls.append(tool)
            outs.append(CallOpened(self.result.index, n, tool.id, tool.name))
        if function.get("arguments"):
            self._calls[n].arguments += function["arguments"]
            outs.append(ArgumentsOut(self.result.index, n, function["arguments"]))
        return outs

    def close(self, reason: str) -> ChoiceClosed:
        self.closed = True
        self.result.finish_reason = public_reason(reason)
        return ChoiceClosed(self.result.index, self.result.finish_reason)


def _chat_logprobs(data: Any) -> list[TokenLogprob] | None:
    """https://platform.openai.com/docs/api-reference/chat/object#chat/object-choices"""
    content = data.get("content") if isinstance(data, dict) else None
    if not content:
        return None
    return [
        TokenLogprob(token=e.get("token", ""), logprob=e.get("logprob", 0.0), bytes=e.get("bytes"),
                     top=[(t.get("token", ""), t.get("logprob", 0.0), t.get("bytes")) for t in e.get("top_logprobs") or ()])
        for e in content
    ]


def _completion_logprobs(data: Any) -> list[TokenLogprob] | None:
    """https://platform.openai.com/docs/api-reference/completions/object"""
    if not isinstance(data, dict) or not data.get("tokens"):
        return None
    tops = data.get("top_logprobs") or [None] * len(data["tokens"])
    return [
        TokenLogprob(token=t, logprob=lp or 0.0, bytes=list(t.encode()),
                     top=[(k, v, list(k.encode())) for k, v in (top or {}).items()])
        for t, lp, top in zip(data["tokens"], data.get("token_logprobs") or [], tops)
    ]
