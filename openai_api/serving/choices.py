"""The one way chat, completions and the Responses API run a request's choices.

A `ChoiceRun` opens the request's generations (one per prompt, each with n choices), reads the
engine's events and turns each choice's text into neutral outputs: answer text, reasoning
(split at the model's thinking tags), tool-call starts and argument pieces, and the choice's
end. A renderer shapes those outputs as one endpoint's chunks; `run.result` accumulates them
into the `GenerationResult` that non-streaming answers render and the cache stores.

    run = ChoiceRun(spec, requests, calls=tool_calls)
    await run.start()                 # errors (404, 400, 429, ...) come before any byte
    async for out in run.outputs():   # TextOut, ReasoningOut, CallOpened, ArgumentsOut, ChoiceClosed
        ...
    run.result                        # complete once outputs() is exhausted
    # or: result = await run.collect()

`replay_outputs(result)` gives the same kinds of outputs for a stored result (one piece each).
"""

from __future__ import annotations

import uuid
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator, Iterator

from inference.constraints import ArgumentsPiece, CallStart, TextPiece, ToolCalls, tool_format
from inference.events import Delta, Finished, Thinking, TokenLogprob
from inference.params import GenerationRequest, ModelSpec
from llmservice.errors import DeadlineExceeded

from .common import Generation, Outcome, deadline, deadline_error, open_generation, public_reason
from .reasoning import ReasoningSplitter
from .results import ChoiceResult, GenerationResult, ToolCallResult


# --- the outputs a run yields, per choice (index counts across prompts: prompt p, choice i -> p*n + i)
@dataclass(frozen=True, slots=True)
class ChoiceOpened:
    index: int


@dataclass(frozen=True, slots=True)
class TextOut:
    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True, slots=True)
class ReasoningOut:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class CallOpened:
    index: int
    call: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ArgumentsOut:
    index: int
    call: int
    text: str


@dataclass(frozen=True, slots=True)
class ChoiceClosed:
    index: int
    finish_reason: str  # public: "stop", "length", "tool_calls", "cancelled"


Output = ChoiceOpened | TextOut | ReasoningOut | CallOpened | ArgumentsOut | ChoiceClosed


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class _Shaper:
    """One choice: engine text -> reasoning / answer text / tool calls, accumulated into its result."""

    __slots__ = ("result", "_splitter", "_parser", "_text", "_reasoning", "_logprobs")

    def __init__(self, index: int, calls: ToolCalls | None, format_name: str | None, thinking: Thinking | None,
                 logprobs: bool):
        self.result = ChoiceResult(index)
        self._splitter = ReasoningSplitter(thinking) if thinking else None
        self._parser = tool_format(format_name).parser(calls.choice) if calls is not None else None
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None

    def feed(self, text: str, logprobs: list[TokenLogprob] | None) -> Iterator[Output]:
        if logprobs and self._logprobs is not None:
            self._logprobs.extend(logprobs)
        if self._splitter is None:
            yield from self.answer(text, logprobs)
            return
        for reasoning, piece in self._splitter.feed(text):
            if reasoning:
                self._reasoning.append(piece)
                yield ReasoningOut(self.result.index, piece)
            else:
                yield from self.answer(piece, logprobs)
                logprobs = None

    def answer(self, text: str, logprobs: list[TokenLogprob] | None) -> Iterator[Output]:
        index = self.result.index
        if self._parser is None:
            if text or logprobs:
                self._text.append(text)
                yield TextOut(index, text, logprobs)
            return
        for piece in self._parser.feed(text):
            if isinstance(piece, TextPiece):
                self._text.append(piece.text)
                yield TextOut(index, piece.text, logprobs)
                logprobs = None
            elif isinstance(piece, CallStart):
                call = ToolCallResult(call_id(), piece.name)
                self.result.tool_calls.append(call)
                yield CallOpened(index, piece.index, call.id, piece.name)
            elif isinstance(piece, ArgumentsPiece):
                self.result.tool_calls[piece.index].arguments += piece.text
                yield ArgumentsOut(index, piece.index, piece.text)

    def close(self, finished: Finished | None) -> Iterator[Output]:
        if self._splitter is not None:
            for reasoning, piece in self._splitter.flush():
                if reasoning:
                    self._reasoning.append(piece)
                    yield ReasoningOut(self.result.index, piece)
                else:
                    yield from self.answer(piece, None)
        result = self.result
        result.text = "".join(self._text)
        result.reasoning = "".join(self._reasoning) if self._splitter is not None and self._reasoning else None
        result.logprobs = self._logprobs
        reason = public_reason(finished.reason) if finished else "length"
        result.finish_reason = "tool_calls" if result.tool_calls and reason == "stop" else reason
        result.completion_tokens = finished.completion_tokens if finished else 0
        yield ChoiceClosed(result.index, result.finish_reason)


class ChoiceRun:
    """Runs every choice of one request (several prompts for completions) and keeps their result."""

    def __init__(self, spec: ModelSpec, requests: list[GenerationRequest], *, stream: bool = True):
        self.spec = spec
        self.requests = requests
        self.stream = stream
        self.calls = requests[0].constraint if isinstance(requests[0].constraint, ToolCalls) else None
        self.outcome = Outcome()
        self.ends = deadline()
        self.result = GenerationResult(choices=[])
        self._first: Generation | None = None

    async def start(self) -> Generation:
        """Open the first prompt's generation: queued and accepted, so errors come before any byte."""
        self._first = await open_generation(
            self.spec, self.requests[0], stream=self.stream, deadline=self.ends, outcome=self.outcome
        )
        self.result.relaxed = self._first.started.relaxed
        return self._first

    @property
    def started(self):
        return self._first.started if self._first else None

    async def collect(self) -> GenerationResult:
        """Run to the end; the result. Cut short by the deadline with nothing to show: 408."""
        async for _ in self.outputs():
            pass
        if self.result.timed_out and not any(c.text or c.tool_calls or c.reasoning for c in self.result.choices):
            raise deadline_error()
        return self.result

    async def outputs(self) -> AsyncIterator[Output]:
        result, produced = self.result, False  # produced: any text yet, in any choice of any prompt
        generation = self._first
        try:
            for p, request in enumerate(self.requests):
                if p:
                    try:
                        generation = await open_generation(self.spec, request, stream=self.stream,
                                                           deadline=self.ends, outcome=self.outcome)
                    except DeadlineExceeded:
                        if not produced:
                            raise
                        self.outcome.timed_out = True  # the answers so far stand; the remaining prompts are cut
                        result.choices.extend(ChoiceResult(q * request.n + i) for q in range(p, len(self.requests))
                                              for i in range(request.n))
                        break
                started = generation.started
                result.prompt_tokens += started.prompt_tokens
                base = p * generation.n
                shapers = [_Shaper(base + i, self.calls, started.tool_format, started.thinking,
                                   request.sampling.logprobs) for i in range(generation.n)]
                result.choices.extend(s.result for s in shapers)
                # Every choice opens (a stream's role chunk, the echoed prompt) once its prompt is
                # accepted: that is written while the prompt is read, so the first token goes out alone.
                for shaper in shapers:
                    yield ChoiceOpened(shaper.result.index)
                    if started.echo:
                        for out in shaper.answer(started.echo, None):
                            yield out
                async with aclosing(generation.events):
                    async for event in generation.events:
                        if not isinstance(event, (Delta, Finished)):
                            continue
                        shaper = shapers[event.index]
                        if isinstance(event, Delta):
                            produced = produced or bool(event.text)
                            for out in shaper.feed(event.text, event.logprobs):
                                yield out
                        else:
                            if event.reason == "timeout" and not produced:
                                raise deadline_error()  # nothing to show for it
                            for out in shaper.close(event):
                                yield out
        finally:
            if generation is not None:
                await generation.events.aclose()
            result.timed_out = self.outcome.timed_out
        result.choices.sort(key=lambda c: c.index)


def replay_outputs(result: GenerationResult) -> Iterator[Output]:
    """A stored result as the outputs a live run gives, each choice in one piece."""
    for c in result.choices:
        yield ChoiceOpened(c.index)
        if c.reasoning:
            yield ReasoningOut(c.index, c.reasoning)
        if c.text or c.logprobs:
            yield TextOut(c.index, c.text, c.logprobs)
        for n, call in enumerate(c.tool_calls):
            yield CallOpened(c.index, n, call.id, call.name)
            if call.arguments:
                yield ArgumentsOut(c.index, n, call.arguments)
        yield ChoiceClosed(c.index, c.finish_reason)
