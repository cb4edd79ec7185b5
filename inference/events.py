"""What an engine emits for a job; these cross from the owner thread to the event loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# "timeout": stopped at the request's deadline (shown to clients as "length", never cached).
FinishReason = Literal["stop", "length", "cancelled", "timeout"]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token's log probability and its most likely alternatives."""

    token: str
    logprob: float
    bytes: list[int]
    top: list[tuple[str, float, list[int]]]


@dataclass(frozen=True, slots=True)
class Thinking:
    """A reasoning model's thinking tags (from its chat template); `inside`: the prompt ends
    inside an open block, so the answer starts with thinking."""

    open: str
    close: str
    inside: bool = False


@dataclass(frozen=True, slots=True)
class Started:
    """The prompt was accepted: tokenized and within the context window. Once per request,
    however many choices it has."""

    prompt_tokens: int
    echo: str | None = None  # the prompt text, when the request asked for it back
    tool_format: str | None = None  # how this model writes tool calls (inference.constraints.tool_format)
    relaxed: tuple[str, ...] = ()  # schema keywords not enforced (non-strict schemas): "uniqueItems at #/..."
    thinking: Thinking | None = None  # a reasoning model's tags, for serving to split the thinking out


@dataclass(frozen=True, slots=True)
class Delta:
    """New text of choice `index`, with the logprobs of the tokens whose text it completes (when asked)."""

    text: str
    logprobs: list[TokenLogprob] | None = None
    index: int = 0


@dataclass(frozen=True, slots=True)
class Finished:
    """Choice `index` has ended. A request with n choices gets n of these, in any order."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    index: int = 0


@dataclass(frozen=True, slots=True)
class Failed:
    """An exception raised on the owner thread, carried to the waiting request as a value."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class Result:
    """The whole answer of a request that is not streamed (an embedding or rerank result)."""

    value: Any


Event = Started | Delta | Finished | Failed | Result
