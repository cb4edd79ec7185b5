"""Splitting a reasoning model's thinking out of its answer, as it streams.

Reasoning models (Qwen3, DeepSeek-R1 distills, ...) write their thinking between tags such as
`<think>` and `</think>` before the answer. The loaded model reports its tags on `Started.thinking`
(read from its chat template), including whether the prompt already opened the block (DeepSeek-R1's
template ends the prompt with `<think>`). The thinking goes to `reasoning_content`, as vLLM,
llama-server and DeepSeek's API return it:
https://api-docs.deepseek.com/guides/reasoning_model
"""

from __future__ import annotations

from inference.events import Thinking


class ReasoningSplitter:
    """Feed answer text; get (is_reasoning, text) pieces. One thinking block, at the start only:
    an opening tag after answer text has begun is answer text. Text that may be the start of a
    tag is held back until it is decided; whitespace right after the closing tag is dropped."""

    __slots__ = ("_open", "_close", "_state", "_held")

    def __init__(self, thinking: Thinking):
        self._open, self._close = thinking.open, thinking.close
        self._state = "thinking" if thinking.inside else "before"  # before -> thinking -> after -> answer
        self._held = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        if self._state == "answer":
            return [(False, text)] if text else []
        self._held += text
        out: list[tuple[bool, str]] = []
        while True:
            held = self._held
            if self._state == "before":
                stripped = held.lstrip()
                if stripped.startswith(self._open):
                    self._held, self._state = stripped[len(self._open):], "thinking"
                    continue
                if stripped and not self._open.startswith(stripped):
                    self._held, self._state = "", "answer"  # no thinking block: all of it is answer
                    out.append((False, held))
                return out
            if self._state == "thinking":
                cut = held.find(self._close)
                if cut >= 0:
                    if cut:
                        out.append((True, held[:cut]))
                    self._held, self._state = held[cut + len(self._close):], "after"
                    continue
                keep = _partial_suffix(held, self._close)
                if len(held) > keep:
                    out.append((True, held[: len(held) - keep]))
                self._held = held[len(held) - keep:]
                return out
            # after the closing tag: drop the whitespace before the answer
            stripped = held.lstrip()
            self._held = ""
            if stripped:
                self._state = "answer"
                out.append((False, stripped))
            return out

    def flush(self) -> list[tuple[bool, str]]:
        """What is held back once the answer has ended (an unfinished tag is plain text)."""
        held, self._held = self._held, ""
        if not held or self._state == "after":
            return []
        return [(self._state == "thinking", held)]


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper prefix of `tag`."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0
