"""The neutral result of one request's generations: what the renderers shape and the cache stores.

No HTTP here: a `GenerationResult` holds per choice the text, the reasoning, the tool calls, the
finish reason, the token counts and the logprobs, as plain values. Chat, completions and the
Responses API render the same result in their own shapes (live, whole, or replayed from the
cache), so a cached answer is one result, never the bytes of one endpoint's response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.events import TokenLogprob

RESULT_VERSION = 1  # bump when the stored form changes: the cache key includes it


@dataclass(slots=True)
class ToolCallResult:
    """One function call the model made: its id (ours), name and arguments (JSON text)."""

    id: str
    name: str
    arguments: str = ""


@dataclass(slots=True)
class ChoiceResult:
    """What one choice produced. `finish_reason` is the public one ("stop", "length",
    "tool_calls", "cancelled"); `text` is the answer without its reasoning or calls."""

    index: int
    text: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCallResult] = field(default_factory=list)
    finish_reason: str = "length"
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class GenerationResult:
    """Every choice of one request, the prompt's token count, and what the answer was not held to."""

    choices: list[ChoiceResult]
    prompt_tokens: int = 0
    relaxed: tuple[str, ...] = ()  # schema keywords not enforced (X-Schema-Relaxed)
    timed_out: bool = False  # cut short by the request's deadline: never stored

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    def to_json(self) -> dict[str, Any]:
        """The stored form (the cache's database column is JSON)."""
        return {
            "v": RESULT_VERSION,
            "prompt_tokens": self.prompt_tokens,
            "relaxed": list(self.relaxed),
            "choices": [
                {
                    "index": c.index,
                    "text": c.text,
                    "reasoning": c.reasoning,
                    "tool_calls": [[t.id, t.name, t.arguments] for t in c.tool_calls],
                    "finish_reason": c.finish_reason,
                    "completion_tokens": c.completion_tokens,
                    "logprobs": None if c.logprobs is None else [_logprob_json(e) for e in c.logprobs],
                }
                for c in self.choices
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "GenerationResult":
        """The inverse of `to_json`; ValueError for another version's form."""
        if not isinstance(data, dict) or data.get("v") != RESULT_VERSION:
            raise ValueError("not a stored result of this version")
        return cls(
            choices=[
                ChoiceResult(
                    index=c["index"],
                    text=c["text"],
                    reasoning=c["reasoning"],
                    tool_calls=[ToolCallResult(*t) for t in c["tool_calls"]],
                    finish_reason=c["finish_reason"],
                    completion_tokens=c["completion_tokens"],
                    logprobs=None if c["logprobs"] is None else [_logprob_from(e) for e in c["logprobs"]],
                )
                for c in data["choices"]
            ],
            prompt_tokens=data["prompt_tokens"],
            relaxed=tuple(data["relaxed"]),
        )


def _logprob_json(e: TokenLogprob) -> list:
    return [e.token, e.logprob, e.bytes, [list(t) for t in e.top]]


def _logprob_from(data: list) -> TokenLogprob:
    token, logprob, raw, top = data
    return TokenLogprob(token=token, logprob=logprob, bytes=raw, top=[(t, lp, b) for t, lp, b in top])
